"""The masked-prediction loss as one pure function.

As fairseq's hubert criterion: cross-entropy summed over masked frames
(weight 1) and unmasked frames (weight 0 in the paper), plus the feature
penalty scaled by the number of masked frames, all divided by `normalizer`
(the number of masked frames: of this batch, or summed over every
micro-batch and worker of one update). Falling unmasked accuracy is expected:
with weight 0 nothing asks the model to predict unmasked frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import PretrainOutput

IGNORE = -100  # target value for frames without a label (padding, past the label end)


@dataclass
class LossOutput:
    loss: torch.Tensor  # what to backpropagate
    masked_ce: torch.Tensor  # sums over frames and label sets (not normalised)
    unmasked_ce: torch.Tensor
    num_masked: torch.Tensor  # counts of labelled frames, summed over label sets
    num_unmasked: torch.Tensor
    masked_correct: torch.Tensor
    unmasked_correct: torch.Tensor
    feature_penalty: torch.Tensor


def hubert_loss(out: PretrainOutput, targets: list[torch.Tensor], masked_weight: float = 1.0,
                unmasked_weight: float = 0.0, penalty_weight: float = 10.0,
                normalizer: float | torch.Tensor | None = None) -> LossOutput:
    """targets: per label set, (B, T) long aligned to model frames, IGNORE where unlabelled.

    Sums over frames are masked sums over every (B, T) frame, not boolean indexing: shapes
    never depend on the mask, so nothing waits for the device."""
    if len(targets) != len(out.logits):
        raise ValueError(f"{len(targets)} target sets for a model with {len(out.logits)} heads")
    zero = out.feature_penalty.new_zeros(())
    sums = {key: zero for key in ("m_ce", "u_ce", "m_n", "u_n", "m_ok", "u_ok")}
    for logits, target in zip(out.logits, targets):
        if target.shape != logits.shape[:2]:
            raise ValueError(f"targets of shape {tuple(target.shape)} do not match "
                             f"{tuple(logits.shape[:2])} model frames")
        labelled = (target != IGNORE) & ~out.padding
        logits = logits.float()  # the loss in float32 whatever produced the logits
        ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none",
                             ignore_index=IGNORE).view_as(target)  # (B, T), 0 where IGNORE
        correct = logits.argmax(-1) == target
        for prefix, select in (("m", labelled & out.mask), ("u", labelled & ~out.mask)):
            sums[f"{prefix}_ce"] = sums[f"{prefix}_ce"] + torch.where(select, ce, 0.0).sum()
            sums[f"{prefix}_n"] = sums[f"{prefix}_n"] + select.sum()
            sums[f"{prefix}_ok"] = sums[f"{prefix}_ok"] + (correct & select).sum()
    if normalizer is None:
        normalizer = sums["m_n"].clamp(min=1)
    total = masked_weight * sums["m_ce"] + unmasked_weight * sums["u_ce"] \
        + penalty_weight * out.feature_penalty * sums["m_n"]
    return LossOutput(total / normalizer, sums["m_ce"].detach(), sums["u_ce"].detach(),
                      sums["m_n"].detach(), sums["u_n"].detach(), sums["m_ok"].detach(),
                      sums["u_ok"].detach(), out.feature_penalty.detach())

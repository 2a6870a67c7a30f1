"""Span masking as fairseq's `compute_mask_indices` draws it for HuBERT (static span lengths,
overlaps allowed, a padding mask given, `require_same_masks`), on the device.

For each row b of the batch, with T_b = valid[b] unpadded frames and L = mask_length:
1. num_spans_b = max(min_masks, int(mask_prob * T_b / L + u_b)), u_b ~ U[0, 1), one draw per row
   (fairseq draws per row whenever a padding mask is given, as HuBERT's model always gives one).
2. Span starts: num_spans_b distinct positions drawn uniformly from [0, R_b), where
   R_b = T_b - L, or num_spans_b + 1 when T_b - L <= num_spans_b (fairseq's branch for utterances
   too short for their spans). So with R_b = T_b - L the last frame is never masked (fairseq's
   range), and a short utterance's spans all start in its first num_spans_b + 1 frames.
3. Each start masks itself and the L - 1 frames after it; overlapping spans merge; frames at or
   past T_b are dropped. A row may end up wholly masked (fairseq does not stop it either).
4. Batch equalisation: with m = the smallest masked count of any row, every row keeps a uniformly
   drawn m of its masked frames and unmasks the rest (which leaves holes inside spans). So every
   row of a batch masks the same number of frames; padding is never masked.

Every draw comes from torch's global generator (or `generator`) on `valid`'s device, so a
trainer that seeds each batch reproduces its masks. Shapes never depend on the draws and nothing
is read back to the host: no loop over rows, no `.item()`.
"""
from __future__ import annotations

import torch

from .model_config import MaskConfig


def span_mask(valid: torch.Tensor, num_frames: int, config: MaskConfig,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """valid: (B,) number of unpadded frames. Returns (B, num_frames) bool, True = masked."""
    batch, device = valid.shape[0], valid.device
    span = config.mask_length
    valid = valid.to(torch.long)
    rounding = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    num_spans = (config.mask_prob * valid.double() / span + rounding).long().clamp(min=config.min_masks)
    start_range = torch.where(valid - span <= num_spans, num_spans + 1, valid - span)
    # start_range <= max(min_masks + 1, num_frames + 1) as mask_prob <= 1: every start has a key.
    width = num_frames + config.min_masks + 1
    slots = torch.arange(width, device=device)
    starts = _random_subset(slots[None, :] < start_range[:, None], num_spans, generator)
    # frame t is masked when a start lies in (t - span, t]: a difference of running counts
    before = torch.nn.functional.pad(starts.long().cumsum(1), (span, 0))  # [:, t + span] = starts <= t
    covered = before[:, span:span + num_frames] - before[:, :num_frames]
    mask = (covered > 0) & (slots[None, :num_frames] < valid[:, None])
    fewest = mask.sum(1).min()
    return _random_subset(mask, fewest.expand(batch), generator)


def _random_subset(allowed: torch.Tensor, size: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """allowed: (B, W) bool, size: (B,) long <= allowed.sum(1). Returns (B, W) bool: in each row
    `size[b]` of its allowed positions, every such subset equally likely (the first size[b] of a
    random order: uniform keys, the disallowed sorted last)."""
    keys = torch.rand(allowed.shape, generator=generator, device=allowed.device)
    order = keys.masked_fill(~allowed, 2.0).argsort(dim=1)
    ranks = torch.arange(allowed.shape[1], device=allowed.device).expand_as(order).contiguous()
    rank = torch.empty_like(order).scatter_(1, order, ranks)  # rank[b, i]: place of position i
    return (rank < size[:, None]) & allowed

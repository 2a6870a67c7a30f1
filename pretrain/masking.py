"""Span masking as in fairseq's `compute_mask_indices` (static lengths, overlaps merge).

Per utterance of T valid frames: num_spans = int(mask_prob * T / mask_length + u),
u ~ U[0, 1), at least `min_masks`; span starts drawn without replacement from
[0, T - mask_length); frames past T are never masked. Drawn from torch's global
generator (or `generator`), so a seeded trainer reproduces its masks.
"""
from __future__ import annotations

import torch

from .model_config import MaskConfig


def span_mask(valid: torch.Tensor, num_frames: int, config: MaskConfig,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """valid: (B,) number of unpadded frames. Returns (B, num_frames) bool, True = masked."""
    batch = valid.shape[0]
    device = valid.device
    span = config.mask_length
    valid = valid.to(torch.long)
    noise = torch.rand(batch, generator=generator, device=device)
    num_spans = (config.mask_prob * valid.double() / span + noise.double()).long()
    num_spans = num_spans.clamp(min=config.min_masks)
    # Where the spans would not fit, fairseq shrinks the start range to T - num_spans - 1.
    start_range = torch.where(valid - span <= num_spans, valid - num_spans - 1, valid - span).clamp(min=1)
    num_spans = torch.minimum(num_spans, start_range)
    # Sampling without replacement: the num_spans smallest of uniform keys over allowed starts.
    keys = torch.rand(batch, num_frames, generator=generator, device=device)
    positions = torch.arange(num_frames, device=device)
    keys = keys.masked_fill(positions[None, :] >= start_range[:, None], 2.0)
    order = keys.argsort(dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, positions.expand(batch, -1).contiguous())
    starts = rank < num_spans[:, None]  # (B, T) True at chosen span starts
    # A frame is masked when a start lies in the `span` frames at or before it.
    counts = torch.nn.functional.conv1d(starts[:, None, :].float(),
                                        torch.ones(1, 1, span, device=device), padding=span - 1)
    mask = counts[:, 0, :num_frames] > 0
    return mask & (positions[None, :] < valid[:, None])

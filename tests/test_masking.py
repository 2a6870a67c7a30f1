"""Span masks follow fairseq's compute_mask_indices distribution and never touch padding."""
import numpy as np
import torch

from pretrain.model_config import MaskConfig
from pretrain.masking import span_mask


def reference_mask(frames: int, rng: np.random.Generator, prob=0.8, span=10, min_masks=2) -> np.ndarray:
    """fairseq's static-length procedure for one unpadded utterance, written out plainly."""
    count = max(min_masks, int(prob * frames / span + rng.random()))
    low = span
    if frames - low <= count:
        low = frames - count - 1
    starts = rng.choice(frames - low, count, replace=False)
    mask = np.zeros(frames, bool)
    for s in starts:
        mask[s:min(s + span, frames)] = True
    return mask


def test_masked_fraction_matches_the_reference():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    for frames in (60, 250, 781):
        ref = np.mean([reference_mask(frames, rng).mean() for _ in range(400)])
        ours = span_mask(torch.full((400,), frames), frames, MaskConfig()).float().mean().item()
        assert abs(ours - ref) < 0.01, (frames, ours, ref)
    assert 0.55 < ours < 0.60  # about 57% of frames, as the paper's setting gives


def test_spans_are_whole_and_at_least_two():
    torch.manual_seed(1)
    mask = span_mask(torch.full((50,), 300), 300, MaskConfig()).numpy()
    for row in mask:
        edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
        runs = edges[1::2] - edges[::2]
        assert (runs >= 10).all() and len(runs) >= 1
    short = span_mask(torch.full((200,), 12), 12, MaskConfig())
    assert (short.sum(1) >= 2).all()  # at least two spans' worth of starts even when tiny


def test_padding_is_never_masked():
    torch.manual_seed(2)
    valid = torch.randint(5, 400, (300,))
    mask = span_mask(valid, 400, MaskConfig())
    frames = torch.arange(400)[None, :]
    assert not (mask & (frames >= valid[:, None])).any()
    assert (mask.sum(1) > 0).all()

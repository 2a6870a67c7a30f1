"""Span masks are drawn as fairseq draws them: compared with torchaudio's port of fairseq's
`compute_mask_indices` (`_compute_mask_indices`) over thousands of batches, and never on padding.

Two-sample test used below (`same_distribution`): a statistic is summed into one histogram per
batch; the chi-square distance between the two pooled histograms is compared with its
distribution under 400 random reassignments of whole batches to the two samples (a permutation
test, valid although the values within one batch are not independent). The test fails when
fewer than 1% of the reassignments give a distance as large as the observed one.
"""
import numpy as np
import pytest
import torch
from torchaudio.models.wav2vec2.components import _compute_mask_indices

from pretrain.masking import span_mask
from pretrain.model_config import MaskConfig

BATCHES = 2000
ROWS = 3  # few rows per batch keep the reference (a Python loop per row) to about a second a case
CASES = {  # name: (frames per batch, draw of the rows' valid frames, mask_prob, mask_length)
    "equal lengths": (100, lambda rng: np.full(ROWS, 100), 0.8, 10),
    "mixed lengths, padded": (100, lambda rng: rng.integers(50, 101, ROWS), 0.65, 5),
    "short utterances, span 10": (12, lambda rng: np.full(ROWS, 12), 0.8, 10),  # 12 - 10 <= 2 spans
    "short utterances, span 5": (7, lambda rng: np.full(ROWS, 7), 0.65, 5),  # 7 - 5 <= 2 spans
}


def draw(case: str, reference: bool, batches: int = BATCHES, rows_alone: bool = False):
    """`batches` masks of one case: a list of ((ROWS, T) bool masks, (ROWS,) valid frames)."""
    frames, lengths, prob, span = CASES[case]
    rng = np.random.default_rng(0)
    torch.manual_seed(1)
    ours = torch.Generator().manual_seed(2)
    out = []
    for _ in range(batches):
        valid = torch.from_numpy(lengths(rng))
        if not reference:
            mask = span_mask(valid, frames, MaskConfig(prob, span, 2), ours)
        elif rows_alone:  # each row its own batch: fairseq without batch equalisation
            mask = torch.cat([reference_mask(valid[i:i + 1], frames, prob, span) for i in range(ROWS)])
        else:
            mask = reference_mask(valid, frames, prob, span)
        out.append((mask.numpy(), valid.numpy()))
    return out


def reference_mask(valid: torch.Tensor, frames: int, prob: float, span: int) -> torch.Tensor:
    """fairseq's draw as HuBERT makes it: a padding mask always given (so a span count per row),
    static spans, overlaps allowed, at least two spans, every row cut to the fewest masked frames."""
    padding = torch.arange(frames)[None, :] >= valid[:, None]
    return _compute_mask_indices((len(valid), frames), padding, prob, span, "static", 0.0, min_masks=2,
                                 no_overlap=False, min_space=0)


def masked_fraction(batches) -> float:
    return sum(m.sum() for m, _ in batches) / sum(v.sum() for _, v in batches)


def count_histograms(batches, edges) -> np.ndarray:
    """(batches, bins): the masked-frame count of each row, binned."""
    return np.stack([np.histogram(m.sum(1), edges)[0] for m, _ in batches])


def start_histograms(batches, frames: int) -> np.ndarray:
    """(batches, frames): where runs of masked frames begin (a span start, or the frame after a hole)."""
    out = []
    for mask, _ in batches:
        begins = mask & ~np.pad(mask, ((0, 0), (1, 0)))[:, :-1]
        out.append(begins.sum(0))
    return np.stack(out)


def same_distribution(ours: np.ndarray, theirs: np.ndarray, reps: int = 400) -> float:
    """p-value of the batch-permutation chi-square test described at the top; ours, theirs:
    (batches, bins) histograms."""
    both = np.concatenate([ours, theirs]).astype(float)
    both = both[:, both.sum(0) > 0]
    rng = np.random.default_rng(0)
    chosen = np.zeros((reps + 1, len(both)))  # row 0: the observed split, then random ones
    chosen[0, :len(ours)] = 1
    for row in chosen[1:]:
        row[rng.permutation(len(both))[:len(ours)]] = 1
    first = chosen @ both  # (reps + 1, bins): the first sample's pooled histogram
    total = both.sum(0)
    expected = total * first.sum(1, keepdims=True) / total.sum()
    distance = ((first - expected) ** 2 * (1 / expected + 1 / (total - expected))).sum(1)
    return ((distance[1:] >= distance[0]).sum() + 1) / (reps + 1)


def count_edges(*samples) -> np.ndarray:
    """Bin edges over the masked counts of both samples: every value its own bin, rare tails merged."""
    counts = np.concatenate([m.sum(1) for batches in samples for m, _ in batches])
    inner = np.unique(np.quantile(counts, np.linspace(0.02, 0.98, 30)).round())
    return np.concatenate([[counts.min() - 0.5], inner[1:] - 0.5, [counts.max() + 0.5]])


@pytest.mark.parametrize("case", list(CASES))
def test_masks_are_drawn_as_fairseq_draws_them(case):
    frames = CASES[case][0]
    ours, theirs = draw(case, reference=False), draw(case, reference=True)
    for batches in (ours, theirs):  # every row of a batch masks the same number of frames
        assert all((m.sum(1) == m.sum(1)[0]).all() for m, _ in batches), case
    # a batch's masked fraction has a standard deviation of at most 0.055 in these cases, so the
    # difference of two means over 2,000 batches has a standard error of at most 0.17 points
    assert abs(masked_fraction(ours) - masked_fraction(theirs)) < 0.005, case
    edges = count_edges(ours, theirs)
    assert same_distribution(count_histograms(ours, edges), count_histograms(theirs, edges)) > 0.01, case
    assert same_distribution(start_histograms(ours, frames), start_histograms(theirs, frames)) > 0.01, case


def test_the_comparison_tells_masks_without_batch_equalisation_apart():
    """The same checks reject fairseq's draw made row by row (no equalisation), which masks more."""
    ours = draw("equal lengths", reference=False, batches=600)
    alone = draw("equal lengths", reference=True, batches=600, rows_alone=True)
    assert masked_fraction(alone) - masked_fraction(ours) > 0.03
    edges = count_edges(ours, alone)
    assert same_distribution(count_histograms(ours, edges), count_histograms(alone, edges)) < 0.01


def test_padding_is_never_masked_and_every_row_masks_as_many_frames():
    generator = torch.Generator().manual_seed(2)
    valid = torch.randint(5, 400, (300,), generator=generator)
    mask = span_mask(valid, 400, MaskConfig(), generator)
    frames = torch.arange(400)[None, :]
    assert not (mask & (frames >= valid[:, None])).any()
    assert (mask.sum(1) == mask.sum(1)[0]).all() and mask.sum(1)[0] > 0


def test_short_utterances_are_masked_from_their_first_frames():
    """12 frames, spans of 10: two starts among the first three frames (fairseq's short branch), so
    frames 1..10 are always masked, and frames 0 and 11 two times in three."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.cat([span_mask(torch.tensor([12]), 12, MaskConfig(0.8, 10, 2), generator)
                      for _ in range(1000)]).float()  # batches of one row: nothing trimmed
    assert rows[:, 1:11].all()
    assert abs(rows[:, 0].mean().item() - 2 / 3) < 0.05 and abs(rows[:, 11].mean().item() - 2 / 3) < 0.05


def test_the_same_seed_draws_the_same_masks():
    valid = torch.tensor([390, 200, 17])
    first = span_mask(valid, 390, MaskConfig(), torch.Generator().manual_seed(5))
    again = span_mask(valid, 390, MaskConfig(), torch.Generator().manual_seed(5))
    other = span_mask(valid, 390, MaskConfig(), torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)

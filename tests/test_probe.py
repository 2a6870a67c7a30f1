"""The phone probe: targets without silence, an exact edit distance, and a probe that reads phones
off features that carry them."""
import itertools

import numpy as np

from clustering.phone_probe import edit_distance, phone_probe, phone_sequence
from clustering.quality_budget import QualityBudget

NAMES = [f"p{k}" for k in range(25)] + ["sil"]


def utterance(rng) -> list[str]:
    """100 Hz phones: 30 phones of 3-8 frames, about one in six a pause."""
    frames = []
    for _ in range(30):
        frames += [NAMES[rng.integers(len(NAMES))]] * int(rng.integers(3, 9))
    return frames


def one_hot(frames: list[str]) -> np.ndarray:
    return np.eye(len(NAMES), dtype=np.float32)[[NAMES.index(p) for p in frames]]


def test_targets_merge_runs_and_leave_out_silence():
    assert phone_sequence(["sil", "a", "a", "b", "sil", "sil", "b", "spn", "c", "c"]) == ["a", "b", "b", "c"]


def test_edit_distance_equals_the_textbook_recursion():
    def slow(a, b):
        table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
        return table[-1][-1]

    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = (list(rng.integers(0, 4, rng.integers(0, 9))) for _ in range(2))
        assert edit_distance(a, b) == slow(a, b)


def test_a_probe_on_one_hot_phone_features_reaches_a_per_below_5_percent():
    rng = np.random.default_rng(1)
    train, report = [utterance(rng) for _ in range(60)], [utterance(rng) for _ in range(20)]
    result = phone_probe([one_hot(f) for f in train], train, 100, [one_hot(f) for f in report], report,
                         QualityBudget())
    assert result.per < 0.05, result.per
    assert result.phones == len(NAMES) - 1 and result.lengths.sum() == sum(len(phone_sequence(f)) for f in report)


def test_a_probe_on_noise_gets_most_phones_wrong():
    rng = np.random.default_rng(2)
    train, report = [utterance(rng) for _ in range(30)], [utterance(rng) for _ in range(10)]
    noise = [rng.standard_normal((len(f), 8)).astype(np.float32) for f in train + report]
    result = phone_probe(noise[:30], train, 100, noise[30:], report, QualityBudget(probe_steps=100))
    assert result.per > 0.8

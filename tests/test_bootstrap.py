"""The paired bootstrap: its interval covers the true PNMI, and "rises" needs an interval above zero."""
import numpy as np
import pytest
from scipy.sparse import csr_matrix

from clustering.bootstrap import (RISES, UNCLEAR, interval, pnmi_from_counts, pnmi_resampled, resample_weights,
                                  verdict)

PHONES, UNITS = 8, 12


def population(seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """(phone prior (P,), p(unit | phone) (P, K)): a fixed synthetic population."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(PHONES, 5.0)), rng.dirichlet(np.full(UNITS, 0.3), size=PHONES)


def utterance_counts(rng, prior, given, utterances: int, frames: int):
    """(utterances, P * K) counts: each utterance mixes phones its own way (around `prior`), then
    draws a unit per frame from p(unit | phone)."""
    rows = np.zeros((utterances, PHONES * UNITS))
    cumulative = np.cumsum(given, axis=1)
    for u in range(utterances):
        phones = rng.choice(PHONES, frames, p=rng.dirichlet(prior * 20))
        units = np.minimum((cumulative[phones] < rng.random(frames)[:, None]).sum(1), UNITS - 1)
        np.add.at(rows[u], phones * UNITS + units, 1)
    return csr_matrix(rows)


def test_the_interval_covers_the_true_pnmi_in_at_least_90_of_100_trials():
    prior, given = population()
    truth = float(pnmi_from_counts(prior[:, None] * given))
    covered = 0
    for trial in range(100):
        rng = np.random.default_rng(trial)
        counts = utterance_counts(rng, prior, given, utterances=30, frames=120)
        estimate = float(pnmi_from_counts(np.asarray(counts.sum(0)).reshape(PHONES, UNITS)))
        low, high = interval(estimate, pnmi_resampled(counts, PHONES, UNITS, resample_weights(30, 400, trial)))
        covered += low <= truth <= high
    assert covered >= 90, covered


def test_resampling_every_utterance_once_gives_the_estimate():
    prior, given = population()
    counts = utterance_counts(np.random.default_rng(0), prior, given, 10, 50)
    once = np.ones((1, 10))
    assert pnmi_resampled(counts, PHONES, UNITS, once)[0] == pytest.approx(
        float(pnmi_from_counts(np.asarray(counts.sum(0)).reshape(PHONES, UNITS))))
    weights = resample_weights(10, 200, 0)
    assert weights.shape == (200, 10) and (weights.sum(1) == 10).all()


def test_rises_is_never_given_when_the_difference_interval_includes_zero():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        difference = rng.normal(rng.normal(0, 0.02), rng.uniform(0.001, 0.03), 300)
        ci = interval(float(difference.mean()), difference)
        for higher_is_better in (True, False):
            said = verdict(ci, higher_is_better)
            seen.add(said)
            if ci[0] <= 0 <= ci[1]:
                assert said == UNCLEAR
            elif said == RISES:
                assert (ci[0] > 0) if higher_is_better else (ci[1] < 0)
    assert seen == {"rises", "falls", UNCLEAR}  # the draws cover every case

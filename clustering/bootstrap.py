"""Paired bootstrap over utterances: intervals for each row and for each difference of rows.

Every row is scored on the same utterances, so one set of draws serves them all: draw
utterances with replacement (`resample_weights`: how often each is drawn, per resample),
recompute each measure from per-utterance pieces (PNMI from joint phone/unit counts, PER from
edits and reference lengths, ABX from weighted triplets), and take the basic 95% interval
from the 2.5th and 97.5th percentiles (`interval`). A difference between two rows is computed draw by draw, so what the rows share
(which utterances were drawn) cancels out of it.
"""
from __future__ import annotations

import numpy as np

LEVEL = 0.95
RISES, FALLS, UNCLEAR = "rises", "falls", "not distinguishable"


def resample_weights(utterances: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, utterances) int: how many times each utterance is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(utterances, np.full(utterances, 1.0 / utterances), size=resamples)


def interval(estimate: float, samples: np.ndarray) -> list[float]:
    """[low, high] 95% basic (reverse-percentile) interval of `estimate` from its resampled values
    (NaN draws ignored): 2 * estimate minus the 97.5th and 2.5th percentiles. Unlike the plain
    percentile interval it does not double an estimator's bias (PNMI from counts reads high on
    few frames); benchmarks/RESULTS.md has the coverage of both on a synthetic population."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if not len(samples) or not np.isfinite(estimate):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(2 * estimate - high), float(2 * estimate - low)]


def verdict(difference_interval: list[float], higher_is_better: bool) -> str:
    """"rises" when the difference's interval lies wholly on the better side of zero, "falls" when
    wholly on the worse side, else "not distinguishable" (zero inside, or no interval)."""
    low, high = difference_interval
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 <= high:
        return UNCLEAR
    better = low > 0 if higher_is_better else high < 0
    return RISES if better else FALLS


def pnmi_from_counts(joint: np.ndarray) -> np.ndarray:
    """(..., phones, units) joint frame counts -> (...) PNMI = I(phone; unit) / H(phone)."""
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum((-2, -1), keepdims=True)
    p = joint / np.maximum(total, 1e-300)
    p_phone, p_unit = p.sum(-1, keepdims=True), p.sum(-2, keepdims=True)
    ratio = np.where(p > 0, p / np.maximum(p_phone * p_unit, 1e-300), 1.0)
    mutual = (p * np.log(ratio)).sum((-2, -1))
    h_phone = -(np.where(p_phone > 0, p_phone * np.log(np.maximum(p_phone, 1e-300)), 0.0)).sum((-2, -1))
    return np.where(h_phone > 0, mutual / np.maximum(h_phone, 1e-300), 0.0)


def pnmi_resampled(counts, phones: int, units: int, weights: np.ndarray, chunk: int = 50) -> np.ndarray:
    """counts: (utterances, phones * units) sparse joint counts per utterance; weights
    (resamples, utterances) -> (resamples,) PNMI of each resample's summed counts."""
    out = []
    for start in range(0, len(weights), chunk):
        joint = np.asarray((counts.T @ weights[start:start + chunk].T).T)  # (chunk, phones * units)
        out.append(pnmi_from_counts(joint.reshape(-1, phones, units)))
    return np.concatenate(out) if out else np.zeros(0)


def ratio_resampled(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(utterances,) numerator and denominator -> (resamples,) sum(w * num) / sum(w * den)."""
    den = weights @ np.asarray(denominator, dtype=np.float64)
    return np.where(den > 0, weights @ np.asarray(numerator, dtype=np.float64) / np.maximum(den, 1e-300), np.nan)

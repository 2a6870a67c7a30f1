"""Rows side by side: each measure with its 95% interval, each step between rows with the
interval of its difference, and the answer per measure.

Every row and every difference uses the same bootstrap draws of the report split's utterances
(bootstrap.py). A step "rises" when the interval of its difference lies wholly on the better
side of zero (PNMI up; ABX error and PER down), "falls" when wholly on the worse side, and is
"not distinguishable" otherwise. The answer per measure, for rows listed oldest first (the
teacher's features, then iteration 1, then iteration 2): "yes" when every step rises, "no"
when a step falls, "not distinguishable" otherwise; null when a row lacks the measure.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from .bootstrap import interval, pnmi_resampled, ratio_resampled, resample_weights, verdict
from .features import FeatureFn
from .row_features import row_features
from .row_quality import QualityData, RowScores, SplitScores, measure_row
from .threads import torch_threads

MEASURES = {"pnmi": True, "abx_within": False, "abx_across": False, "per": False}  # name: higher is better
MIN_UTTERANCES = 10  # a measure resting on fewer report utterances gets no interval (and no verdict)
HIGHEST = {"pnmi": 1.0, "abx_within": 1.0, "abx_across": 1.0, "per": float("inf")}  # an interval is clipped to [0, this]


def _measure(scores: SplitScores, measure: str, phones: int):
    """(estimate, utterances it rests on, weights -> resampled values), or None when the row lacks it."""
    if measure == "pnmi":
        counts = scores.counts
        return (scores.pnmi, int((counts.getnnz(axis=1) > 0).sum()),
                partial(pnmi_resampled, counts, phones, counts.shape[1] // phones))
    if measure == "per":
        probe = scores.probe
        return None if probe is None else \
            (probe.per, int((probe.lengths > 0).sum()), partial(ratio_resampled, probe.edits, probe.lengths))
    abx = scores.abx_within if measure == "abx_within" else scores.abx_across
    return None if abx is None else (abx.error, abx.contributors, abx.resampled)


def _estimate_and_samples(scores: SplitScores, measure: str, phones: int, weights: np.ndarray):
    """(point estimate, (resamples,) bootstrap values, utterances it rests on), or (None, None, 0)
    when the row lacks it. Values are NaN when fewer than MIN_UTTERANCES utterances contribute:
    a bootstrap over two or three utterances gives intervals that look sure and mean nothing."""
    found = _measure(scores, measure, phones)
    if found is None:
        return None, None, 0
    estimate, count, resample = found
    return estimate, resample(weights) if count >= MIN_UTTERANCES else np.full(len(weights), np.nan), count


def compare_rows(rows: list[RowScores], data: QualityData, split: str,
                 layers: list[dict | None] | None = None) -> dict:
    """{"split", "utterances", "headline": [row, ...], "differences": [...], "rises": {...}} on `split`;
    `layers` gives each row's layer fields (e.g. {"layer": 4, "update": 3000}) or None."""
    report = data.splits[split]
    weights = resample_weights(len(report.manifest), data.budget.resamples, data.budget.seed)
    phones = len(report.phone_names)
    values = [{m: _estimate_and_samples(row.splits[split], m, phones, weights) for m in MEASURES} for row in rows]
    headline = []
    for row, measured, layer in zip(rows, values, layers or [None] * len(rows)):
        entry = {"name": row.name, "layer": None, **(layer or {})}
        for measure, (estimate, samples, _) in measured.items():
            entry[measure] = estimate
            entry[f"{measure}_ci"] = None if estimate is None else \
                _finite([np.clip(v, 0.0, HIGHEST[measure]) for v in interval(estimate, samples)])
        probe = row.splits[split].probe
        entry["utterances"] = {measure: count for measure, (_, _, count) in measured.items()}
        entry["kmeans"] = row.kmeans
        entry["probe"] = None if probe is None else {"train_utterances": probe.train_utterances,
                                                      "train_frames": probe.train_frames, "phones": probe.phones,
                                                      "final_loss": probe.final_loss}
        headline.append(entry)
    differences = [_step(rows[k - 1].name, rows[k].name, values[k - 1], values[k]) for k in range(1, len(rows))]
    return {"split": split, "utterances": len(report.manifest), "headline": headline, "differences": differences,
            "rises": {m: _answer([step[m] for step in differences]) for m in MEASURES} if differences else {}}


def _step(before: str, after: str, old: dict, new: dict) -> dict:
    step = {"from": before, "to": after}
    for measure, better_higher in MEASURES.items():
        (a, a_samples, _), (b, b_samples, _) = old[measure], new[measure]
        if a is None or b is None:
            step[measure] = None
            continue
        ci = interval(b - a, b_samples - a_samples)
        step[measure] = {"difference": b - a, "ci": _finite(ci), "verdict": verdict(ci, better_higher)}
    return step


def _finite(values) -> list[float | None]:
    """JSON-safe: NaN (no resample had the measure) becomes None."""
    return [float(v) if np.isfinite(v) else None for v in values]


def _answer(steps: list[dict | None]) -> str | None:
    if not steps or any(s is None for s in steps):
        return None
    verdicts = [s["verdict"] for s in steps]
    if all(v == "rises" for v in verdicts):
        return "yes"
    return "no" if "falls" in verdicts else "not distinguishable"


@dataclass
class RowSpec:
    """A row to measure: its name, feature function, frame rate and layer fields (None for MFCC)."""

    name: str
    features: FeatureFn  # wav (samples,) float32 16 kHz -> (frames, dim) float32; may have `stream`
    frame_rate: float
    layer: dict | None = None  # e.g. {"layer": 4, "update": 3000}


def measure_rows(specs: list[RowSpec], data: QualityData, split: str) -> dict:
    """Every row's features computed once, measured by `measure_row`, compared on `split`."""
    import torch

    scores = []
    for spec in specs:
        with torch_threads(torch.get_num_threads()):  # a feature function may change the count (MFCC: 1)
            row = row_features(spec.name, spec.features, spec.frame_rate, data.fit, data.report_manifests())
        scores.append(measure_row(row, data))
        del row
    return compare_rows(scores, data, split, [spec.layer for spec in specs])

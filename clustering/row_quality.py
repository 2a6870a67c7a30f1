"""One function scores a row, whatever its features: `measure_row`.

A row is one kind of features (MFCC, a layer of a model, a Hugging Face model's layer) at its
own frame rate. Every row of a report gets the same budget (quality_budget.py): k-means on
the same train utterances (the same seconds of audio; frames differ with the frame rate),
with the same K, backend and seed; labels at the row's own rate, compared with the 100 Hz
phone alignments by repeating each label (50 Hz: twice); PNMI on every aligned utterance of
each report split; triphone ABX within (and across) speaker on the same items (abx.py); a
linear CTC phone probe trained on the same train utterances (phone_probe.py). What each
measure keeps per utterance (joint counts, weighted triplets, edits) lets `row_compare`
draw the same bootstrap resamples for every row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .abx import AbxCells, AbxScore, abx_score, across_cells, item_features, within_cells
from .abx_items import Item, subsample, triphone_items
from .audio import SAMPLE_RATE
from .bootstrap import pnmi_from_counts
from .kmeans import fit_kmeans
from .manifest import Manifest
from .phone_probe import ProbeResult, phone_probe
from .quality import utterance_counts
from .quality_budget import QualityBudget
from .row_features import RowFeatures, fit_utterances


@dataclass
class ReportSplit:
    """A split rows are scored on: its aligned utterances and what every row shares about them."""

    manifest: Manifest  # the split's aligned utterances, in its order
    alignments: dict[str, list[str]]  # uid -> 100 Hz phones
    phone_names: list[str]  # the alignments' phones, sorted: PNMI's count rows
    items: list[Item]  # ABX items after subsampling
    within: AbxCells
    across: AbxCells | None  # None when speakers are unknown
    speakers_known: bool


@dataclass
class QualityData:
    budget: QualityBudget
    fit: Manifest  # the train utterances every row's k-means and probe see
    fit_alignments: dict[str, list[str]]  # those of them with alignments (the probe's targets)
    splits: dict[str, ReportSplit]

    @property
    def fit_seconds(self) -> float:
        return sum(self.fit.sizes) / SAMPLE_RATE

    def report_manifests(self) -> dict[str, Manifest]:
        """split -> its aligned utterances: what a row's report features must follow, line for line."""
        return {name: split.manifest for name, split in self.splits.items()}


def quality_data(train: Manifest, reports: dict[str, Manifest], alignments: dict[str, list[str]],
                 speakers: dict[str, str] | None, budget: QualityBudget) -> QualityData:
    """What every row is measured against: `budget.fit_seconds` of `train` (drawn with the seed),
    and each report manifest's aligned utterances with their ABX items. `alignments` covers the
    report utterances (train ones are optional: without them there is no probe)."""
    fit = fit_utterances(train, budget.fit_seconds, budget.seed)
    fit_ids = (fit.utterance_id(i) for i in range(len(fit)))
    splits = {name: _report_split(name, manifest, alignments, speakers, budget) for name, manifest in reports.items()}
    return QualityData(budget, fit, {uid: alignments[uid] for uid in fit_ids if uid in alignments}, splits)


def _report_split(name: str, manifest: Manifest, alignments: dict[str, list[str]], speakers: dict[str, str] | None,
                  budget: QualityBudget) -> ReportSplit:
    aligned = [i for i in range(len(manifest)) if manifest.utterance_id(i) in alignments]
    if not aligned:
        raise ValueError(f"the {name} split has no utterance with a phone alignment (e.g. "
                         f"{manifest.utterance_id(0) if len(manifest) else 'none'!r}); check the alignments' ids")
    manifest = manifest.subset(aligned)
    own = {manifest.utterance_id(i): alignments[manifest.utterance_id(i)] for i in range(len(manifest))}
    known = bool(speakers) and all(manifest.utterance_id(i) in speakers for i in range(len(manifest)))
    items = subsample(triphone_items(manifest, own, speakers if known else None), budget.abx_max_items, budget.seed)
    across = across_cells(items, budget.abx_max_items, budget.abx_max_x_speakers, budget.seed) if known else None
    return ReportSplit(manifest, own, sorted({p for frames in own.values() for p in frames}), items,
                       within_cells(items, budget.abx_max_items), across, known)


@dataclass
class SplitScores:
    pnmi: float
    counts: object  # (utterances, phones * units) sparse joint frame counts
    abx_within: AbxScore | None  # None: no within cell (or not measured)
    abx_across: AbxScore | None  # None: speakers unknown, no cell, or not measured
    probe: ProbeResult | None  # None: no aligned train utterance, or not measured


@dataclass
class RowScores:
    name: str
    frame_rate: float
    kmeans: dict  # what its k-means saw: utterances, seconds, frames; units, backend, seed, inertia
    splits: dict[str, SplitScores]


def measure_row(row: RowFeatures, data: QualityData, full: bool = True) -> RowScores:
    """Score `row` on every split of `data`: PNMI always, ABX and the phone probe when `full`."""
    budget = data.budget
    teacher = fit_kmeans(np.concatenate(row.fit), budget.num_units, budget.kmeans_backend, budget.seed,
                         features=row.name, device="cpu")
    kmeans = {"utterances": len(data.fit), "seconds": round(data.fit_seconds, 2), "frames": teacher.info.num_frames,
              "units": budget.num_units, "backend": teacher.info.backend, "seed": budget.seed,
              "inertia": teacher.info.inertia}
    splits = {}
    for name, split in data.splits.items():
        feats = row.report[name]
        labels = [teacher.assign(f) for f in feats]
        counts = utterance_counts(labels, row.frame_rate, split.manifest, split.alignments, split.phone_names,
                                  budget.num_units)
        pnmi = float(pnmi_from_counts(np.asarray(counts.sum(0)).reshape(len(split.phone_names), -1)))
        splits[name] = SplitScores(pnmi, counts, *(_full_measures(row, data, name, feats) if full else (None,) * 3))
    return RowScores(row.name, row.frame_rate, kmeans, splits)


def _full_measures(row: RowFeatures, data: QualityData, name: str, feats: list[np.ndarray]):
    """(ABX within, ABX across, probe) of one split."""
    split = data.splits[name]
    items = item_features(feats, split.items, row.frame_rate)
    owners = np.array([it.utterance for it in split.items], dtype=np.int64)
    within = abx_score(split.within, items, owners) if len(split.within) else None
    across = abx_score(split.across, items, owners) if split.across is not None and len(split.across) else None
    probe = None
    if data.fit_alignments:
        aligned = [i for i in range(len(data.fit)) if data.fit.utterance_id(i) in data.fit_alignments]
        probe = phone_probe([row.fit[i] for i in aligned], [data.fit_alignments[data.fit.utterance_id(i)] for i in aligned],
                            row.frame_rate, feats,
                            [split.alignments[split.manifest.utterance_id(i)] for i in range(len(split.manifest))],
                            data.budget)
    return within, across, probe

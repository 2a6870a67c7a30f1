"""The quality stage: each iteration's teacher report (quality/it1, quality/it2) with its model's
layer scan, and the headline (quality/report.md): MFCC teacher vs iteration 1 vs iteration 2.

Everything is scored on the report split: test when the data stage made one (layers are then
chosen on valid and reported on test), else valid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clustering.labels import LabelInfo
from clustering.manifest import read_manifest
from clustering.quality_report import analyse_labels, write_report
from pretrain.typed_settings import DERIVED

from .headline import write_headline
from .layout import WorkLayout
from .scan_stage import alignments_path, heldout_splits, read_scan


@dataclass(frozen=True)
class QualitySettings:
    """What the report is built from: the labels of both teachers and, with `scans`, both layer scans;
    the phones are the `alignments` source (or the built-in corpus's)."""

    scans: bool = field(default=True, metadata=DERIVED)  # the scan stages run (and are read)
    teacher: str = field(default="MFCC", metadata=DERIVED)  # what the iteration-1 teacher is called


def report_split(inputs: WorkLayout) -> str:
    """The split reports are scored on: test, else valid, else train (labelled by the train teacher)."""
    return (heldout_splits(inputs) or ["train"])[-1]


def write_quality(inputs: WorkLayout, out: Path, settings: QualitySettings) -> None:
    """quality/it1, quality/it2 (teacher metrics, layer scans on the report split) and the headline."""
    split = report_split(inputs)
    manifest = read_manifest(inputs.manifest(split))
    aligned = alignments_path(inputs, split)
    scanned = {n: read_scan(inputs.scan(n)) if settings.scans else None for n in (1, 2)}  # none stale
    results, previous = {}, None
    for number in (1, 2):
        info = LabelInfo.load(inputs.labels(number))
        labels = inputs.label_file(number, split)
        result = analyse_labels(labels, info.label_rate, info.num_units, manifest, aligned, compare=previous)
        scan, scores = scanned[number], None
        if scan is not None:  # scanned on valid and test; the report split is one of them
            by_update = {update: splits[split] for update, splits in scan["by_update"].items()}
            if len(by_update) > 1:
                result["layer_pnmi_by_update"] = by_update
            scores = by_update[max(by_update)]
        write_report(result, inputs.teacher_quality(number).parent, scores)
        results[number], previous = result, (labels, info.label_rate)
    if aligned is not None:
        write_headline(out, split, len(manifest), results, scanned, settings.teacher)

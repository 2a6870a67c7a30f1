"""The quality stage: each iteration's teacher report (quality/it1, quality/it2) with its model's
layer scan, and the headline (quality/report.md): MFCC teacher vs iteration 1 vs iteration 2.

Everything is scored on the report split: test when the data stage made one (layers are then
chosen on valid and reported on test), else valid.
"""
from __future__ import annotations

from pathlib import Path

from clustering.labels import LabelInfo
from clustering.manifest import read_manifest
from clustering.quality_report import analyse_labels, write_report

from .headline import write_headline
from .run_config import PipelineConfig
from .scan_stage import alignments_path, heldout_splits, read_scan, scans


def report_split(work: Path) -> str:
    """The split reports are scored on: test, else valid, else train (labelled by the train teacher)."""
    return (heldout_splits(work / "data") or ["train"])[-1]


def quality_stage(config: PipelineConfig, folder: Path) -> None:
    """quality/it1, quality/it2 (teacher metrics, layer scans on the report split) and the headline."""
    work = Path(config.work_dir)
    split = report_split(work)
    manifest = read_manifest(work / "data" / f"{split}.tsv")
    aligned = alignments_path(config, split)
    scanned = {n: read_scan(work, n) if scans(config) else None for n in (1, 2)}  # none stale
    results, previous = {}, None
    for number in (1, 2):
        label_dir = work / f"it{number}-labels"
        info = LabelInfo.load(label_dir)
        result = analyse_labels(label_dir / f"{split}.km", info.label_rate, info.num_units, manifest, aligned,
                                compare=previous)
        scan, scores = scanned[number], None
        if scan is not None:  # scanned on valid and test; the report split is one of them
            by_update = {update: splits[split] for update, splits in scan["by_update"].items()}
            if len(by_update) > 1:
                result["layer_pnmi_by_update"] = by_update
            scores = by_update[max(by_update)]
        write_report(result, folder / f"it{number}", scores)
        results[number], previous = result, (label_dir / f"{split}.km", info.label_rate)
    if aligned is not None:
        teacher = "MFCC" if config.iteration1.features == "mfcc" else "Hugging Face layer"
        write_headline(folder, split, len(manifest), results, scanned, teacher)

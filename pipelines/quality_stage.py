"""The quality stage: each iteration's teacher report (quality/it1, quality/it2) with its model's
layer scan, and the headline (quality/report.md, quality/quality.json): the iteration-1
teacher's features vs the iteration-1 model vs the iteration-2 model, each a row measured by the
one function `clustering.row_quality.measure_row` (PNMI, triphone ABX, phone probe, intervals).

Everything is scored on the report split: test when the data stage made one (layers are then
chosen on valid and reported on test), else valid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clustering.alignments import load_alignments
from clustering.audio import FRAME_RATE, MFCC_RATE
from clustering.features import mfcc_features
from clustering.labels import LabelInfo
from clustering.manifest import Manifest, read_manifest
from clustering.quality_report import analyse_labels, write_report
from clustering.row_compare import RowSpec, measure_rows
from clustering.row_quality import QualityData, quality_data
from clustering.speakers import find_speakers
from pretrain.typed_settings import DERIVED, RUN_ONLY

from .headline import write_headline
from .layout import WorkLayout
from .scan_stage import alignments_path, budget, heldout_splits, read_scan


@dataclass(frozen=True)
class QualitySettings:
    """The report: both teachers' labels, and with `scans` every row measured with one budget (`units`,
    `seed`: the scans' own); the iteration-1 teacher's features are MFCC, or layer `teacher_layer` of
    the `teacher_hf` source. Speakers: the `speakers` source, the built-in corpus's, or the
    `speaker_folder`-th folder of each audio path (0: none)."""

    units: int = 100
    seed: int = 0
    speaker_folder: int = 0
    teacher_layer: int = field(default=0, metadata=DERIVED)  # 0: MFCC
    scans: bool = field(default=True, metadata=DERIVED)  # the scan stages run (and are read)
    device: str = field(default="auto", metadata=RUN_ONLY)


def report_split(inputs: WorkLayout) -> str:
    """The split reports are scored on: test, else valid, else train (labelled by the train teacher)."""
    return (heldout_splits(inputs) or ["train"])[-1]


def write_quality(inputs: WorkLayout, out: Path, settings: QualitySettings) -> None:
    """quality/it1, quality/it2 (teacher metrics, layer scans on the report split) and the headline."""
    split = report_split(inputs)
    manifest = read_manifest(inputs.manifest(split))
    aligned = alignments_path(inputs, split)
    scanned = {n: read_scan(inputs.scan(n)) if settings.scans else None for n in (1, 2)}  # none stale
    _teacher_reports(inputs, split, manifest, aligned, scanned)
    if aligned is not None:
        data = _quality_data(inputs, settings, split, manifest)
        result = measure_rows(_rows(inputs, settings, scanned), data, split)
        write_headline(out, result, data, scanned)


def _teacher_reports(inputs: WorkLayout, split: str, manifest: Manifest, aligned: Path | None,
                     scanned: dict[int, dict | None]) -> None:
    """quality/itN: each teacher's labels of the report split, with its model's layer scan."""
    previous = None
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
        previous = (labels, info.label_rate)


def _quality_data(inputs: WorkLayout, settings: QualitySettings, split: str, manifest: Manifest) -> QualityData:
    """The run's budget on the train split and the report split, its alignments and speakers."""
    train = read_manifest(inputs.manifest("train"))
    uids = [m.utterance_id(i) for m in (train, manifest) for i in range(len(m))]
    alignments = {}
    for source in dict.fromkeys(p for p in (alignments_path(inputs, "train"), alignments_path(inputs, split)) if p):
        alignments.update(load_alignments(source, uids))
    speakers = inputs.source("speakers") or (inputs.corpus_speakers() if inputs.corpus_speakers().exists() else None)
    return quality_data(train, {split: manifest}, alignments,
                        find_speakers(uids, speakers, 0 if speakers else settings.speaker_folder), budget(settings))


def _rows(inputs: WorkLayout, settings: QualitySettings, scanned: dict[int, dict | None]) -> list[RowSpec]:
    """The iteration-1 teacher's features, then each scanned model at its layer chosen on valid."""
    from pretrain.checkpoint import checkpoint_path
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    if not settings.teacher_layer:
        rows = [RowSpec("MFCC", mfcc_features, MFCC_RATE)]
    else:
        teacher = LayerFeatures(load_encoder(inputs.source("teacher_hf")), settings.teacher_layer,
                                device=settings.device)
        rows = [RowSpec(f"Hugging Face layer {settings.teacher_layer}", teacher, FRAME_RATE,
                        {"layer": settings.teacher_layer})]
    for number, scan in scanned.items():
        if scan is not None:
            chosen = scan["chosen"]
            path = checkpoint_path(inputs.checkpoints(number), chosen["update"])
            features = LayerFeatures(load_encoder(path), chosen["layer"], device=settings.device)
            rows.append(RowSpec(f"iteration-{number} model", features, FRAME_RATE,
                                {"layer": chosen["layer"], "update": chosen["update"]}))
    return rows

"""The quality stage: each iteration's teacher report (quality/it1, quality/it2) with its model's
layer scan, and the headline (quality/report.md, quality/quality.json): the iteration-1
teacher's features vs the iteration-1 model vs the iteration-2 model, each a row measured by the
one function `clustering.row_quality.measure_row` (PNMI, triphone ABX, phone probe, intervals).

Everything is scored on the report split: test when the data stage made one (layers are then
chosen on valid and reported on test), else valid.
"""
from __future__ import annotations

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

from .headline import write_headline
from .run_config import PipelineConfig
from .scan_stage import alignments_path, budget, heldout_splits, read_scan, scans


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
    _teacher_reports(work, folder, split, manifest, aligned, scanned)
    if aligned is not None:
        data = _quality_data(config, split, manifest)
        result = measure_rows(_rows(config, scanned), data, split)
        write_headline(folder, result, data, scanned)


def _teacher_reports(work: Path, folder: Path, split: str, manifest: Manifest, aligned: Path | None,
                     scanned: dict[int, dict | None]) -> None:
    """quality/itN: each teacher's labels of the report split, with its model's layer scan."""
    previous = None
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
        previous = (label_dir / f"{split}.km", info.label_rate)


def _quality_data(config: PipelineConfig, split: str, manifest: Manifest) -> QualityData:
    """The run's budget on the train split and the report split, its alignments and speakers."""
    work = Path(config.work_dir)
    train = read_manifest(work / "data" / "train.tsv")
    uids = [m.utterance_id(i) for m in (train, manifest) for i in range(len(m))]
    alignments = {}
    for source in dict.fromkeys(p for p in (alignments_path(config, "train"), alignments_path(config, split)) if p):
        alignments.update(load_alignments(source, uids))
    return quality_data(train, {split: manifest}, alignments, find_speakers(uids, *speaker_source(config)),
                        budget(config))


def speaker_source(config: PipelineConfig) -> tuple[Path | None, int]:
    """(speakers file, folder level): the config's, or the built-in corpus's speakers.tsv."""
    built_in = Path(config.work_dir) / "data" / "speakers.tsv"
    if config.speakers:
        return Path(config.speakers), 0
    if not config.audio_dir and built_in.exists():
        return built_in, 0
    return None, config.speaker_folder


def _rows(config: PipelineConfig, scanned: dict[int, dict | None]) -> list[RowSpec]:
    """The iteration-1 teacher's features, then each scanned model at its layer chosen on valid."""
    from pretrain.checkpoint import checkpoint_path
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    one = config.iteration1
    if one.features == "mfcc":
        rows = [RowSpec("MFCC", mfcc_features, MFCC_RATE)]
    else:
        teacher = LayerFeatures(load_encoder(one.teacher_hf), one.layer, device=config.device)
        rows = [RowSpec(f"Hugging Face layer {one.layer}", teacher, FRAME_RATE, {"layer": one.layer})]
    for number, scan in scanned.items():
        if scan is not None:
            chosen = scan["chosen"]
            path = checkpoint_path(Path(config.work_dir) / f"it{number}-train" / "checkpoints", chosen["update"])
            features = LayerFeatures(load_encoder(path), chosen["layer"], device=config.device)
            rows.append(RowSpec(f"iteration-{number} model", features, FRAME_RATE,
                                {"layer": chosen["layer"], "update": chosen["update"]}))
    return rows

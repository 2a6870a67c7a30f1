"""The quality stage: both teachers' quality reports and the iteration-1 model's PNMI per layer
(of its newest checkpoint, or of every kept checkpoint to follow it over training)."""
from __future__ import annotations

from pathlib import Path

from clustering.alignments import load_alignments
from clustering.labels import LabelInfo
from clustering.layer_pnmi import pnmi_per_layer
from clustering.manifest import read_manifest
from clustering.quality_report import analyse_labels, write_report

from .run_config import PipelineConfig


def report_split(work: Path) -> str:
    """The held-out split (labelled by the training teachers), or train when valid is empty."""
    return "valid" if len(read_manifest(work / "data" / "valid.tsv")) else "train"


def alignments_path(config: PipelineConfig, split: str) -> Path | None:
    if config.alignments:
        return Path(config.alignments)
    built_in = Path(config.work_dir) / "data" / f"{split}.phn.tsv"
    return built_in if not config.audio_dir and built_in.exists() else None


def quality_stage(config: PipelineConfig, folder: Path) -> None:
    """quality/it1 and quality/it2 reports, it2 compared with it1, plus the it1 layer scan."""
    work = Path(config.work_dir)
    split = report_split(work)
    manifest = read_manifest(work / "data" / f"{split}.tsv")
    aligned = alignments_path(config, split)
    one, two = LabelInfo.load(work / "it1-labels"), LabelInfo.load(work / "it2-labels")
    first = analyse_labels(work / "it1-labels" / f"{split}.km", one.label_rate, one.num_units, manifest, aligned)
    scores = None
    if config.scan_checkpoints and aligned is not None:
        from pretrain.checkpoint import checkpoint_paths, checkpoint_update

        first["layer_pnmi_by_update"] = {
            checkpoint_update(path): checkpoint_layer_pnmi(work, manifest, aligned, config, path)
            for path in checkpoint_paths(work / "it1-train" / "checkpoints")}
    if config.scan_layers and aligned is not None:
        # the newest checkpoint is the last one scanned over training: no need to scan it twice
        by_update = first.get("layer_pnmi_by_update")
        scores = by_update[max(by_update)] if by_update else checkpoint_layer_pnmi(work, manifest, aligned, config)
    write_report(first, folder / "it1", scores)
    second = analyse_labels(work / "it2-labels" / f"{split}.km", two.label_rate, two.num_units, manifest, aligned,
                            compare=(work / "it1-labels" / f"{split}.km", one.label_rate))
    write_report(second, folder / "it2")


def checkpoint_layer_pnmi(work: Path, manifest, aligned: Path, config: PipelineConfig,
                    checkpoint: Path | None = None) -> dict[int, float]:
    """PNMI per layer of the iteration-1 model (its newest checkpoint unless one is given):
    k-means fitted on train utterances, scored on `manifest`'s, like the MFCC teacher."""
    from pretrain.checkpoint import latest_path
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    encoder = load_encoder(checkpoint or latest_path(work / "it1-train" / "checkpoints"))
    features = LayerFeatures(encoder, 1, device=config.device)  # the GPU when present (device "auto")
    layers = list(range(1, encoder.config.num_hidden_layers + 1))
    uids = [manifest.utterance_id(i) for i in range(len(manifest))]
    return pnmi_per_layer(read_manifest(work / "data" / "train.tsv"), manifest, load_alignments(aligned, uids),
                      features.layers, layers,
                      num_units=config.iteration2.num_units, seed=config.seed)

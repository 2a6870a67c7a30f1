"""The layer scans (it1-scan, it2-scan): PNMI of every layer of an iteration's model.

Each layer is a row measured by `clustering.row_quality.measure_row`, the function the report
measures every row with: k-means with `scan_units` units on the budget's seconds of train
audio (the same utterances for every layer, checkpoint and row), scored on every aligned
utterance of the valid split (where a layer is chosen: iteration 2's teacher when its layer is
"auto", and the report's row) and of the test split when there is one (where the report is
scored, so the choice flatters nothing). Every kept checkpoint is scanned with
`scan_checkpoints`, else the newest; one model pass gives every layer.

scan.json:
  {"model": "it1", "units": 100, "utterances": {"valid": 40, "test": 40},
   "kmeans": {"utterances": 80, "seconds": 600.1, "frames": 30005, ...},
   "by_update": {"3000": {"valid": {"1": 0.31, ...}, "test": {...}}, ...},
   "chosen": {"update": 3000, "layer": 4, "valid": 0.41, "test": 0.40}}
"chosen" is the newest checkpoint's (the one iteration 2 learns from) best layer on valid.
"""
from __future__ import annotations

import json
from pathlib import Path

from clustering.alignments import load_alignments
from clustering.audio import FRAME_RATE
from clustering.manifest import Manifest, read_manifest
from clustering.quality_budget import QualityBudget
from clustering.row_features import layer_rows
from clustering.row_quality import QualityData, measure_row, quality_data

from .run_config import PipelineConfig

SCAN = "scan.json"


def can_scan(config: PipelineConfig) -> bool:
    """Phone alignments and held-out utterances to scan with: the built-in corpus has both;
    the user's audio needs `alignments` and valid_percent > 0."""
    return not config.audio_dir or (bool(config.alignments) and config.valid_percent > 0)


def scans(config: PipelineConfig) -> bool:
    """Whether the layer scans run: asked for (or needed by layer "auto"), with alignments to score on."""
    return (config.scan_layers or config.iteration2.layer == "auto") and can_scan(config)


def heldout_splits(data: Path) -> list[str]:
    """The held-out splits with utterances: valid, then test when the data stage made one."""
    return [split for split in ("valid", "test")
            if (data / f"{split}.tsv").exists() and len(read_manifest(data / f"{split}.tsv"))]


def alignments_path(config: PipelineConfig, split: str) -> Path | None:
    """Where `split`'s phone alignments are: the config's, the built-in corpus's SPLIT.phn.tsv, or None."""
    if config.alignments:
        return Path(config.alignments)
    built_in = Path(config.work_dir) / "data" / f"{split}.phn.tsv"
    return built_in if not config.audio_dir and built_in.exists() else None


def split_alignments(config: PipelineConfig, manifests: dict[str, Manifest]) -> dict[str, list[str]]:
    """{uid: 100 Hz phones} for the utterances of `manifests` (split name -> manifest)."""
    found: dict[str, list[str]] = {}
    for split, manifest in manifests.items():
        source = alignments_path(config, split)
        if source is None:
            raise FileNotFoundError(f"the {split} split has no phone alignments to scan layers with")
        found.update(load_alignments(source, [manifest.utterance_id(i) for i in range(len(manifest))]))
    return found


def budget(config: PipelineConfig) -> QualityBudget:
    """The quality budget of a run: `scan_units` units and the run's seed, the rest as QualityBudget's."""
    return QualityBudget(num_units=config.scan_units, seed=config.seed)


def scan_stage(config: PipelineConfig, number: int, folder: Path) -> None:
    """Scan the iteration's checkpoints into folder/scan.json (see the module docstring)."""
    from pretrain.checkpoint import checkpoint_paths, checkpoint_update, latest_path

    work = Path(config.work_dir)
    data, checkpoints = work / "data", work / f"it{number}-train" / "checkpoints"
    manifests = {split: read_manifest(data / f"{split}.tsv") for split in heldout_splits(data)}
    if not manifests:
        raise ValueError(f"{data}: the layer scan needs held-out utterances; set valid_percent above 0")
    measured = quality_data(read_manifest(data / "train.tsv"), manifests, split_alignments(config, manifests), None,
                            budget(config))
    paths = checkpoint_paths(checkpoints) if config.scan_checkpoints else [latest_path(checkpoints)]
    if not paths or paths[-1] is None:
        raise FileNotFoundError(f"{checkpoints}: no checkpoint to scan")
    by_update, kmeans = {}, None
    for path in paths:
        by_update[checkpoint_update(path)], kmeans = _scan_checkpoint(path, measured, config, f"it{number}")
    newest = max(by_update)
    valid = by_update[newest]["valid"]
    layer = max(valid, key=valid.get)
    chosen = {"update": newest, "layer": layer,
              **{split: scores[layer] for split, scores in by_update[newest].items()}}
    result = {"model": f"it{number}", "units": config.scan_units,
              "utterances": {split: len(s.manifest) for split, s in measured.splits.items()},
              "kmeans": kmeans, "by_update": by_update, "chosen": chosen}
    (folder / SCAN).write_text(json.dumps(result, indent=2) + "\n")
    print(f"[it{number}-scan] layer {layer} of update {newest} scores best on valid: PNMI {chosen['valid']:.3f}"
          + (f" (test {chosen['test']:.3f})" if "test" in chosen else ""))


def _scan_checkpoint(path: Path, measured: QualityData, config: PipelineConfig,
                     model: str) -> tuple[dict[str, dict[int, float]], dict]:
    """({split: {layer: PNMI}}, what each layer's k-means saw) of one checkpoint, on the GPU when
    present (device "auto")."""
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    encoder = load_encoder(path)
    features = LayerFeatures(encoder, 1, device=config.device)
    layers = list(range(1, encoder.config.num_hidden_layers + 1))
    rows = layer_rows(model, features.layers, layers, FRAME_RATE, measured.fit, measured.report_manifests())
    scores = {layer: measure_row(row, measured, full=False) for layer, row in rows.items()}
    per_split = {split: {layer: s.splits[split].pnmi for layer, s in scores.items()} for split in measured.splits}
    return per_split, {k: v for k, v in scores[layers[0]].kmeans.items() if k != "inertia"}


def read_scan(work: Path, number: int) -> dict | None:
    """it{number}-scan/scan.json with whole-number keys, or None when that scan did not run."""
    path = work / f"it{number}-scan" / SCAN
    if not path.exists():
        return None
    scan = json.loads(path.read_text())
    scan["by_update"] = {int(u): {split: {int(k): v for k, v in scores.items()} for split, scores in splits.items()}
                         for u, splits in scan["by_update"].items()}
    return scan


def chosen_layer(work: Path) -> int:
    """The layer the it1-scan stage chose (iteration 2's teacher when its layer is "auto")."""
    scan = read_scan(work, 1)
    if scan is None:
        raise FileNotFoundError(f"{work / 'it1-scan' / SCAN}: missing; iteration2.layer = \"auto\" needs the "
                                "it1-scan stage (rerun with --from it1-scan)")
    return int(scan["chosen"]["layer"])

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
from dataclasses import dataclass, field
from pathlib import Path

from clustering.alignments import load_alignments
from clustering.audio import FRAME_RATE
from clustering.manifest import Manifest, read_manifest
from clustering.quality_budget import QualityBudget
from clustering.row_features import layer_rows
from clustering.row_quality import QualityData, measure_row, quality_data
from clustering.text_files import read_json
from pretrain.typed_settings import DERIVED, RUN_ONLY

from .layout import HELDOUT, WorkLayout
from .run_config import PipelineConfig


@dataclass(frozen=True)
class ScanSettings:
    """Every layer of each scanned checkpoint (all kept ones with `checkpoints`, else the newest): a
    k-means with `units` fitted on train, PNMI on valid and test against the `alignments` source (or
    the built-in corpus's)."""

    iteration: int = field(metadata=DERIVED)
    units: int = 100
    checkpoints: bool = False
    seed: int = 0
    device: str = field(default="auto", metadata=RUN_ONLY)


def can_scan(config: PipelineConfig) -> bool:
    """Phone alignments and held-out utterances to scan with: the built-in corpus has both;
    the user's audio needs `alignments` and valid_percent > 0."""
    return not config.audio_dir or (bool(config.alignments) and config.valid_percent > 0)


def scans(config: PipelineConfig) -> bool:
    """Whether the layer scans run: asked for (or needed by layer "auto"), with alignments to score on."""
    return (config.scan_layers or config.iteration2.layer == "auto") and can_scan(config)


def heldout_splits(inputs: WorkLayout) -> list[str]:
    """The held-out splits with utterances: valid, then test when the data stage made one."""
    return [split for split in HELDOUT
            if split in inputs.splits() and len(read_manifest(inputs.manifest(split)))]


def alignments_path(inputs: WorkLayout, split: str) -> Path | None:
    """Where `split`'s phone alignments are: the user's (`alignments` source), the built-in corpus's
    SPLIT.phn.tsv, or None."""
    if inputs.source("alignments") is not None:
        return inputs.source("alignments")
    built_in = inputs.corpus_alignments(split)
    return built_in if built_in.exists() else None


def split_alignments(inputs: WorkLayout, manifests: dict[str, Manifest]) -> dict[str, list[str]]:
    """{uid: 100 Hz phones} for the utterances of `manifests` (split name -> manifest)."""
    found: dict[str, list[str]] = {}
    for split, manifest in manifests.items():
        source = alignments_path(inputs, split)
        if source is None:
            raise FileNotFoundError(f"the {split} split has no phone alignments to scan layers with")
        found.update(load_alignments(source, [manifest.utterance_id(i) for i in range(len(manifest))]))
    return found


def budget(settings) -> QualityBudget:
    """The quality budget of a run (ScanSettings or QualitySettings): `units` units and the run's seed,
    the rest as QualityBudget's; the scans and the report measure every row with it."""
    return QualityBudget(num_units=settings.units, seed=settings.seed)


def scan_layers(inputs: WorkLayout, out: Path, settings: ScanSettings) -> None:
    """Scan the iteration's checkpoints into scan.json (see the module docstring)."""
    from pretrain.checkpoint import checkpoint_paths, checkpoint_update, latest_path

    number, checkpoints = settings.iteration, inputs.checkpoints(settings.iteration)
    manifests = {split: read_manifest(inputs.manifest(split)) for split in heldout_splits(inputs)}
    if not manifests:
        raise ValueError(f"{inputs.manifest('valid').parent}: the layer scan needs held-out utterances; set "
                         "valid_percent above 0")
    measured = quality_data(read_manifest(inputs.manifest("train")), manifests,
                            split_alignments(inputs, manifests), None, budget(settings))
    paths = checkpoint_paths(checkpoints) if settings.checkpoints else [latest_path(checkpoints)]
    if not paths or paths[-1] is None:
        raise FileNotFoundError(f"{checkpoints}: no checkpoint to scan")
    by_update, kmeans = {}, None
    for path in paths:
        by_update[checkpoint_update(path)], kmeans = scan_checkpoint(path, measured, settings, f"it{number}")
    newest = max(by_update)
    valid = by_update[newest]["valid"]
    layer = max(valid, key=valid.get)
    chosen = {"update": newest, "layer": layer,
              **{split: scores[layer] for split, scores in by_update[newest].items()}}
    result = {"model": f"it{number}", "units": settings.units,
              "utterances": {split: len(s.manifest) for split, s in measured.splits.items()},
              "kmeans": kmeans, "by_update": by_update, "chosen": chosen}
    inputs.scan(number).write_text(json.dumps(result, indent=2) + "\n")
    print(f"[it{number}-scan] layer {layer} of update {newest} scores best on valid: PNMI {chosen['valid']:.3f}"
          + (f" (test {chosen['test']:.3f})" if "test" in chosen else ""))


def scan_checkpoint(path: Path, measured: QualityData, settings: ScanSettings,
                     model: str) -> tuple[dict[str, dict[int, float]], dict]:
    """({split: {layer: PNMI}}, what each layer's k-means saw) of one checkpoint, on the GPU when
    present (device "auto")."""
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    encoder = load_encoder(path)
    features = LayerFeatures(encoder, 1, device=settings.device)
    layers = list(range(1, encoder.config.num_hidden_layers + 1))
    rows = layer_rows(model, features.layers, layers, FRAME_RATE, measured.fit, measured.report_manifests())
    scores = {layer: measure_row(row, measured, full=False) for layer, row in rows.items()}
    per_split = {split: {layer: s.splits[split].pnmi for layer, s in scores.items()} for split in measured.splits}
    return per_split, {k: v for k, v in scores[layers[0]].kmeans.items() if k != "inertia"}


def read_scan(path: Path) -> dict | None:
    """A scan.json with whole-number keys, or None when that scan did not run."""
    if not path.exists():
        return None
    fix = f"rerun the scan with --from {path.parent.name}"
    scan = read_json(path, fix)
    try:
        scan["by_update"] = {int(u): {split: {int(k): v for k, v in scores.items()} for split, scores in
                                      splits.items()} for u, splits in scan["by_update"].items()}
        int(scan["chosen"]["layer"])
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"{path}: not a layer scan ({type(error).__name__}: {error}); {fix}") from None
    return scan


def chosen_layer(path: Path) -> int:
    """The layer the it1-scan stage chose (its scan.json at `path`): iteration 2's teacher when "auto"."""
    scan = read_scan(path)
    if scan is None:
        raise FileNotFoundError(f"{path}: missing; iteration2.layer = \"auto\" needs the it1-scan stage (rerun "
                                "with --from it1-scan)")
    return int(scan["chosen"]["layer"])

"""What a training run was started on, recorded in its folder, so it is never continued on anything else.

`OUT/inputs.json` holds the manifests' content (utterance paths and sizes, not the root line: a
moved corpus is the same data), each label set's identity (units, label rate, the teacher's
SHA-256, utterances per split, the label files' sizes) and every setting that decides the weights
(model, masking, training without `max_updates`, init weights). Resuming compares them and names
what differs; a run folder from before this record is recorded as it is found.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from clustering.atomic import write_text
from clustering.labels import LabelInfo
from clustering.manifest import read_manifest

from .model_config import MaskConfig, ModelConfig
from .train_config import TrainConfig
from .typed_settings import describe_changes, hashed_settings

RECORD = "inputs.json"


def manifest_digest(path: Path) -> str:
    """SHA-256 (16 hex) of a manifest's utterances and sizes, in order; the root line does not count."""
    manifest = read_manifest(path)
    digest = hashlib.sha256()
    for rel, size in zip(manifest.paths, manifest.sizes):
        digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()[:16]


def label_identity(directory: Path, splits: list[str]) -> dict:
    """What decides a label set: its teacher, units, rate, lines per split and label file sizes."""
    info = LabelInfo.load(directory)
    return {"num_units": info.num_units, "label_rate": info.label_rate, "teacher_sha256": info.teacher_sha256,
            "lines": info.lines, "bytes": {s: os.path.getsize(directory / f"{s}.km") for s in splits
                                           if (directory / f"{s}.km").exists()}}


def run_inputs(manifest_dir: Path, label_dirs: list[Path], settings: tuple[ModelConfig, MaskConfig],
               config: TrainConfig, init_from) -> dict:
    splits = [s for s in ("train", "valid") if (manifest_dir / f"{s}.tsv").exists()]
    model, mask = settings
    return {"manifests": {s: manifest_digest(manifest_dir / f"{s}.tsv") for s in splits},
            "labels": {f"set{i + 1}": label_identity(d, splits) for i, d in enumerate(label_dirs)},
            "settings": {"model": dataclasses.asdict(model), "mask": dataclasses.asdict(mask),
                         "train": hashed_settings(config), "init_from": str(init_from or "")}}


def check_or_record(out_dir: Path, inputs: dict, resuming: bool) -> None:
    """Record `inputs` in `out_dir`; when `resuming` a run recorded with other inputs, ValueError naming
    what differs (the record is left as it was)."""
    path = out_dir / RECORD
    if resuming and path.exists():
        try:
            before = json.loads(path.read_text())
        except ValueError:
            before = None
        if isinstance(before, dict):
            before, now = json.loads(json.dumps(before)), json.loads(json.dumps(inputs, default=str))
            changed = describe_changes(before, now)
            if changed:
                raise ValueError(f"{out_dir}: its checkpoints were trained on other inputs ({changed}); "
                                 "resume with the same manifests, labels and settings, or train into "
                                 "another folder")
    write_text(path, json.dumps(inputs, indent=2, sort_keys=True, default=str) + "\n")

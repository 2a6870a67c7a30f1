"""Label files: `{split}.km` (one line per utterance, in manifest order, space-separated
unit ids), `dict.km.txt` (`i 1` per unit) and `labels.json` (what made them)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


class LabelError(ValueError):
    """Label files that do not fit their manifest or dictionary; names the file and utterance."""


@dataclass
class LabelInfo:
    """Contents of labels.json: the trainer reads num_units and label_rate from here."""

    num_units: int
    label_rate: float  # Hz: 100 for MFCC labels, 50 for layer labels
    features: str = ""  # what the teacher was fitted on, e.g. "mfcc" or "layer6:<checkpoint>"
    teacher: str = ""  # path of the k-means teacher
    teacher_sha256: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # split -> number of utterances

    def save(self, directory: str | Path) -> None:
        _atomic_write(Path(directory) / "labels.json", json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "LabelInfo":
        path = Path(directory) / "labels.json"
        if not path.exists():
            raise LabelError(f"{path}: missing; label directories are made by `hubert labels`")
        return cls(**json.loads(path.read_text()))


def read_labels(path: str | Path) -> list[np.ndarray]:
    """Unit ids per utterance, in file order; each an int64 array (frames,)."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            rows.append(np.array(line.split(), dtype=np.int64))
        except ValueError:
            raise LabelError(f"{path}:{number}: expected space-separated unit ids") from None
    return rows


def write_labels(path: str | Path, rows) -> None:
    """Write unit ids per utterance atomically, one line each."""
    _atomic_write(Path(path), "".join(" ".join(map(str, r)) + "\n" for r in rows))


def write_dictionary(directory: str | Path, num_units: int) -> None:
    """dict.km.txt with `i 1` for every unit 0..num_units-1."""
    _atomic_write(Path(directory) / "dict.km.txt", "".join(f"{i} 1\n" for i in range(num_units)))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_labels(path: str | Path, rows: list[np.ndarray], manifest, label_rate: float,
                 num_units: int) -> None:
    """Raise LabelError unless `rows` fit `manifest` line for line and length for length.

    Checks: one row per manifest utterance; each row's length within
    LENGTH_TOLERANCE_S of the audio's duration at `label_rate`; every id < num_units.
    """
    from .audio import LENGTH_TOLERANCE_S, expected_label_count

    if len(rows) != len(manifest):
        raise LabelError(f"{path}: {len(rows)} lines but the manifest has {len(manifest)} "
                         "utterances; labels must be written in manifest order, one line each "
                         "(merge shards with `hubert labels --merge`)")
    slack = LENGTH_TOLERANCE_S * label_rate
    for i, row in enumerate(rows):
        expected = expected_label_count(manifest.sizes[i], label_rate)
        if abs(len(row) - expected) > slack:
            raise LabelError(
                f"{path}:{i + 1}: utterance {manifest.paths[i]} has {len(row)} labels, but "
                f"{manifest.sizes[i]} samples need about {expected:.0f} at {label_rate:g} Hz; "
                "check the label rate (100 for MFCC, 50 for layer labels) and the manifest")
        if len(row) and (row.min() < 0 or row.max() >= num_units):
            raise LabelError(f"{path}:{i + 1}: unit id {int(row.max())} outside the dictionary "
                             f"of {num_units} units (utterance {manifest.paths[i]})")


def check_dictionary(directory: str | Path, num_units: int) -> None:
    """Raise LabelError unless dict.km.txt lists exactly units 0..num_units-1."""
    path = Path(directory) / "dict.km.txt"
    if not path.exists():
        raise LabelError(f"{path}: missing; rerun `hubert labels`")
    units = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if units != [str(i) for i in range(num_units)]:
        raise LabelError(f"{path}: lists {len(units)} units, expected 0..{num_units - 1} in order; "
                         "an incomplete dictionary silently maps labels to <unk>")


def load_checked_labels(directory: str | Path, split: str, manifest) -> tuple[LabelInfo, list[np.ndarray]]:
    """labels.json, dictionary and `{split}.km` of `directory`, checked against `manifest`."""
    info = LabelInfo.load(directory)
    check_dictionary(directory, info.num_units)
    path = Path(directory) / f"{split}.km"
    if not path.exists():
        raise LabelError(f"{path}: missing; label split {split!r} with `hubert labels`")
    rows = read_labels(path)
    check_labels(path, rows, manifest, info.label_rate, info.num_units)
    return info, rows

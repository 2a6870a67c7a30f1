"""Label files: `{split}.km` (one line per utterance, in manifest order, space-separated
unit ids), `dict.km.txt` (`i 1` per unit) and `labels.json` (what made them)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_write, write_text
from .audio import SAMPLE_RATE, total_stride
from .path_checks import input_file
from .text_files import TextFileError, read_json, read_text


LABEL_INFO = "labels.json"


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
    frames: list[list[int]] = field(default_factory=list)  # (kernel, stride) per layer of the framing the
    # labels were computed with: [[400, 160]] for MFCC, the teacher's CNN for layer labels ([] = not recorded)

    def save(self, directory: str | Path) -> None:
        write_text(Path(directory) / LABEL_INFO, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "LabelInfo":
        """Read `directory`/labels.json; LabelError naming the file and the key for anything malformed."""
        path = Path(directory) / LABEL_INFO
        if not path.is_file():
            raise LabelError(f"{path}: missing; label directories are made by `hubert labels`")
        try:
            data = read_json(path, "rerun `hubert labels` to rewrite it")
        except TextFileError as error:
            raise LabelError(str(error)) from None
        _check_info_keys(path, data)
        return cls(**data)

    def check_lines(self, path: str | Path, split: str, num_utterances: int) -> None:
        """LabelError when `lines` lists `split` with a count other than the manifest's `num_utterances`.

        `path` is this labels.json, for the message; splits it does not list are not checked.
        """
        listed = self.lines.get(split)
        if listed is not None and listed != num_utterances:
            raise LabelError(f"{path}: lists {listed} utterances for split {split!r}, but the manifest has "
                             f"{num_utterances}; the labels were made for another manifest: rerun `hubert labels`")


_INFO_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "dict[str, int]": (dict,),
               "list[list[int]]": (list,)}


def _check_info_keys(path: Path, data) -> None:
    """LabelError unless `data` has every LabelInfo key without a default, no others, each of its type."""
    if not isinstance(data, dict):
        raise LabelError(f"{path}: expected a JSON object of label settings, got {type(data).__name__}; "
                         "rerun `hubert labels` to rewrite it")
    fields = {f.name: f for f in dataclasses.fields(LabelInfo)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise LabelError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(fields)}); remove it")
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise LabelError(f"{path}: missing key {name!r}; rerun `hubert labels` to rewrite it")
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, _INFO_TYPES[spec.type]):
            raise LabelError(f"{path}: key {name!r} must be {spec.type}, got {value!r}; "
                             "rerun `hubert labels` to rewrite it")
    _check_info_values(path, data)


def _check_info_values(path: Path, data: dict) -> None:
    """LabelError for a non-positive num_units or label_rate, or a `lines` entry that is not a count."""
    for name in ("num_units", "label_rate"):
        if name in data and not data[name] > 0:
            raise LabelError(f"{path}: key {name!r} must be positive, got {data[name]!r}")
    frames = data.get("frames", [])
    if frames and not all(isinstance(layer, list) and len(layer) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in layer) for layer in frames):
        raise LabelError(f"{path}: key 'frames' must list [kernel, stride] per layer, got {frames!r}")
    if frames and "label_rate" in data and abs(SAMPLE_RATE / total_stride(frames) - data["label_rate"]) > 1e-6:
        raise LabelError(f"{path}: label_rate {data['label_rate']} Hz does not fit its frames {frames} "
                         f"({SAMPLE_RATE / total_stride(frames):g} Hz); rerun `hubert labels`")
    for split, count in data.get("lines", {}).items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise LabelError(f"{path}: key 'lines' must map each split to its number of utterances, "
                             f"got {split!r}: {count!r}")


def read_labels(path: str | Path) -> list[np.ndarray]:
    """Unit ids per utterance, in file order; each an int64 array (frames,). Blank lines at the end
    are dropped (editors add them); a blank line before the last is an utterance without labels."""
    path = input_file(path, "label file")
    rows = []
    for number, line in enumerate(read_text(path).rstrip("\r\n\t ").splitlines(), start=1):
        try:
            rows.append(np.array(line.split(), dtype=np.int64))
        except ValueError:
            raise LabelError(f"{path}:{number}: expected space-separated unit ids") from None
    return rows


def write_labels(path: str | Path, rows) -> None:
    """Write unit ids per utterance atomically, one line each, as `rows` (any iterable) come."""
    with atomic_write(Path(path)) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(" ".join(map(str, row)) + "\n")


def write_dictionary(directory: str | Path, num_units: int) -> None:
    """dict.km.txt with `i 1` for every unit 0..num_units-1."""
    write_text(Path(directory) / "dict.km.txt", "".join(f"{i} 1\n" for i in range(num_units)))


def check_labels(path: str | Path, rows: list[np.ndarray], manifest, label_rate: float,
                 num_units: int) -> None:
    """Raise LabelError unless `rows` fit `manifest` line for line and length for length.

    Checks: one row per manifest utterance; each row's length within
    LENGTH_TOLERANCE_S of the audio's duration at `label_rate`; every id < num_units.
    """
    check_label_lengths(path, np.array([len(r) for r in rows], np.int64), manifest, label_rate)
    for i, row in enumerate(rows):
        if len(row) and (row.min() < 0 or row.max() >= num_units):
            bad = int(row.min()) if row.min() < 0 else int(row.max())
            largest = max(int(r.max()) for r in rows if len(r))
            raise unit_error(path, i, bad, manifest.paths[i], num_units, largest)


def check_label_lengths(path: str | Path, lengths: np.ndarray, manifest, label_rate: float) -> None:
    """Raise LabelError unless there is one label count per utterance of `manifest` (a Manifest or
    ManifestArrays), each within LENGTH_TOLERANCE_S of the audio's duration at `label_rate`.
    `lengths`: (utterances,) labels per utterance, in manifest order. Vectorised: no loop per utterance."""
    from .audio import LENGTH_TOLERANCE_S, expected_label_count

    if len(lengths) != len(manifest):
        raise LabelError(f"{path}: {len(lengths)} lines but the manifest has {len(manifest)} "
                         "utterances; labels must be written in manifest order, one line each "
                         "(merge shards with `hubert labels --merge`)")
    slack = LENGTH_TOLERANCE_S * label_rate
    sizes = np.asarray(manifest.sizes, dtype=np.int64)
    block = 2**20  # utterances compared at a time, so the temporaries stay small
    for begin in range(0, len(sizes), block):
        expected = expected_label_count(sizes[begin:begin + block], label_rate)
        wrong = np.flatnonzero(np.abs(lengths[begin:begin + block] - expected) > slack)
        if len(wrong):
            i = begin + int(wrong[0])
            raise LabelError(
                f"{path}:{i + 1}: utterance {manifest.paths[i]} has {lengths[i]} labels, but "
                f"{sizes[i]} samples need about {expected[wrong[0]]:.0f} at {label_rate:g} Hz; "
                "check the label rate (100 for MFCC, 50 for layer labels) and the manifest")


def unit_error(path, i: int, bad: int, utterance: str, num_units: int, largest: int) -> LabelError:
    """The error for line i + 1 holding id `bad`, outside 0..num_units-1; `largest` is the file's largest id."""
    return LabelError(f"{path}:{i + 1}: unit id {bad} outside the dictionary of {num_units} units "
                      f"(utterance {utterance}); the largest id in the file is {largest}: give the number "
                      "of units of the teacher that made these labels (labels.json num_units, --num-units)")


def check_comparable(path_a: str | Path, rows_a: list[np.ndarray], rate_a: float,
                     path_b: str | Path, rows_b: list[np.ndarray], rate_b: float) -> None:
    """Raise LabelError unless two label files label the same utterances: as many lines, and
    line for line durations (labels / rate) within LENGTH_TOLERANCE_S of each other."""
    from .audio import LENGTH_TOLERANCE_S

    if len(rows_a) != len(rows_b):
        raise LabelError(f"{path_a} has {len(rows_a)} lines but {path_b} has {len(rows_b)} (line "
                         f"{min(len(rows_a), len(rows_b)) + 1} is in one only); compare labels of the same manifest")
    for i, (a, b) in enumerate(zip(rows_a, rows_b)):
        seconds_a, seconds_b = len(a) / rate_a, len(b) / rate_b
        if abs(seconds_a - seconds_b) > LENGTH_TOLERANCE_S:
            raise LabelError(f"{path_a}:{i + 1} has {len(a)} labels at {rate_a:g} Hz ({seconds_a:.2f} s) but "
                             f"{path_b}:{i + 1} has {len(b)} at {rate_b:g} Hz ({seconds_b:.2f} s); compare labels "
                             "of the same manifest, each with its own label rate")


def check_dictionary(directory: str | Path, num_units: int) -> None:
    """Raise LabelError unless dict.km.txt lists exactly units 0..num_units-1."""
    path = Path(directory) / "dict.km.txt"
    if not path.exists():
        raise LabelError(f"{path}: missing; rerun `hubert labels`")
    units = [line.split()[0] for line in read_text(path).splitlines() if line.strip()]
    if units != [str(i) for i in range(num_units)]:
        raise LabelError(f"{path}: lists {len(units)} units, expected 0..{num_units - 1} in order; "
                         "an incomplete dictionary silently maps labels to <unk>")

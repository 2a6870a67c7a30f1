"""A label file's units as memory-mapped arrays: every label of the split in one array.

`SPLIT.km.arrays` beside `SPLIT.km` (the format: flat_arrays) holds
  labels   (labels,) uint16 (uint32 when the dictionary has more than 65,536 units): every
           utterance's unit ids, one utterance after the other, in manifest order
  offsets  (utterances + 1,) int64: utterance i's labels are labels[offsets[i]:offsets[i + 1]]
and records the largest id, so checking ids against a dictionary reads no label.
`open_checked_labels` is what the trainer reads: labels.json, dict.km.txt and these arrays,
checked against the manifest with numpy (seconds for millions of utterances).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from .flat_arrays import ArrayWriter, line_bounds, offsets_fit, open_or_build, text_chunks
from .labels import LABEL_INFO, LabelError, LabelInfo, check_dictionary, check_label_lengths, unit_error

UINT16_UNITS = 2**16  # dictionaries up to this many units store ids as uint16
BLOCK = 2**24  # labels scanned at a time when looking for the first id outside a dictionary


class LabelArrays:
    """Unit ids per utterance, read from memory-mapped arrays. `labels[i]` is utterance i's ids
    (a read-only uint16 or uint32 view); `max_unit` is the largest id (-1 when there is none)."""

    def __init__(self, path: Path, num_units: int, facts: dict, arrays: dict[str, np.ndarray]):
        self.path, self.num_units, self.max_unit = path, num_units, int(facts["max_unit"])
        self.values, self.offsets = arrays["labels"], arrays["offsets"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __reduce__(self):
        """Pickled as its path (a process started by spawn maps the arrays itself, copying nothing)."""
        return open_label_arrays, (self.path, self.num_units)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.values[self.offsets[index]:self.offsets[index + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def lengths(self) -> np.ndarray:
        """(utterances,) int64 labels per utterance."""
        return np.diff(self.offsets)

    def first_outside(self, num_units: int) -> tuple[int, int]:
        """(utterance, id) of the first id >= num_units; (-1, -1) when there is none."""
        for begin in range(0, len(self.values), BLOCK):
            found = np.flatnonzero(self.values[begin:begin + BLOCK] >= num_units)
            if len(found):
                at = begin + int(found[0])
                return int(np.searchsorted(self.offsets, at, side="right")) - 1, int(self.values[at])
        return -1, -1


def open_label_arrays(path: str | Path, num_units: int) -> LabelArrays:
    """The label file `path` (SPLIT.km) as memory-mapped arrays: its SPLIT.km.arrays when they were
    built from the file as it is now, else rebuilt from it first. `num_units` (the dictionary's size)
    decides the id type of a rebuild."""
    path = Path(path)
    facts, arrays = open_or_build(path, partial(_build, path, num_units), _consistent)
    return LabelArrays(path, num_units, facts, arrays)


def write_label_arrays(path: str | Path, num_units: int) -> LabelArrays:
    """Build `path`.arrays from the label file `path` (replacing any), atomically, and open them."""
    path = Path(path)
    facts, arrays = open_or_build(path, partial(_build, path, num_units), _consistent, rebuild=True)
    return LabelArrays(path, num_units, facts, arrays)


def _consistent(facts: dict, arrays: dict[str, np.ndarray]) -> bool:
    """Whether the arrays agree with each other and the facts: one run of labels per utterance."""
    if not {"labels", "offsets"} <= set(arrays) or not isinstance(facts.get("max_unit"), int):
        return False
    return offsets_fit(arrays["offsets"], facts.get("utterances", -1), len(arrays["labels"]))


def check_label_arrays(labels: LabelArrays, manifest, label_rate: float, num_units: int) -> None:
    """Raise LabelError unless `labels` fit `manifest` (a Manifest or ManifestArrays): one row per
    utterance, each as long as its audio at `label_rate` (within LENGTH_TOLERANCE_S), ids < num_units."""
    check_label_lengths(labels.path, labels.lengths(), manifest, label_rate)
    if labels.max_unit >= num_units:
        line, bad = labels.first_outside(num_units)
        raise unit_error(labels.path, line, bad, manifest.paths[line], num_units, labels.max_unit)


def open_checked_labels(directory: str | Path, split: str, manifest) -> tuple[LabelInfo, LabelArrays]:
    """labels.json, dictionary and `{split}.km` of `directory` (as arrays), checked against `manifest`."""
    info = LabelInfo.load(directory)
    info.check_lines(Path(directory) / LABEL_INFO, split, len(manifest))
    check_dictionary(directory, info.num_units)
    path = Path(directory) / f"{split}.km"
    if not path.exists():
        raise LabelError(f"{path}: missing; label split {split!r} with `hubert labels`")
    labels = open_label_arrays(path, info.num_units)
    check_label_arrays(labels, manifest, info.label_rate, info.num_units)
    return info, labels


def _build(path: Path, num_units: int, target: Path, stamp: dict) -> Path:
    """Write the arrays of label file `path` to `target`, a chunk of lines at a time."""
    dtype = np.dtype(np.uint16 if num_units <= UINT16_UNITS else np.uint32)
    counts, largest, lines = [], -1, 0
    with open(path, "rb") as f, ArrayWriter(target) as out:
        out.append("labels", np.empty(0, dtype))
        for chunk in text_chunks(f):
            values, per_line = _parse_lines(chunk) or _parse_carefully(chunk, path, lines)
            if len(values):
                _check_storable(path, values, per_line, lines, dtype, num_units)
                largest = max(largest, int(values.max()))
            out.append("labels", values.astype(dtype))
            counts.append(per_line)
            lines += len(per_line)
        out.append("offsets", np.concatenate([[0], np.cumsum(np.concatenate(counts or [[]]))]).astype(np.int64))
        return out.commit(stamp, {"max_unit": largest, "utterances": lines})


def _parse_lines(chunk: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids int64, ids per line) of whole lines of blank-separated unsigned ids; None for any
    other byte (a sign, a letter, a lone carriage return), left to `_parse_carefully`."""
    if chunk.translate(None, b"0123456789 \t\n\r") or chunk.count(b"\r") != chunk.count(b"\r\n"):
        return None  # a byte of another kind, or a lone carriage return (a line break for str.splitlines)
    text = np.frombuffer(chunk, np.uint8)
    digit = (text - ord("0")) < 10  # uint8 arithmetic wraps: true for '0'..'9' only
    first_digit = digit.copy()
    first_digit[1:] &= ~digit[:-1]  # where each id begins
    id_starts = np.flatnonzero(first_digit)
    before_line = np.searchsorted(id_starts, line_bounds(text)[0])  # ids before each line's first byte
    per_line = np.diff(np.append(before_line, len(id_starts)))
    values = np.fromstring(chunk, dtype=np.int64, sep=" ")  # C's strtol over blank-separated ids
    if len(values) != per_line.sum():  # lines of blanks only read as one 0
        return None
    return values, per_line
def _parse_carefully(chunk: bytes, path: Path, before: int) -> tuple[np.ndarray, np.ndarray]:
    """What `read_labels` makes of these lines (the first is line `before` + 1 of `path`), or its error."""
    rows = []
    for number, line in enumerate(chunk.decode("utf-8").splitlines(), start=before + 1):
        try:
            rows.append(np.array(line.split(), dtype=np.int64))
        except ValueError:
            raise LabelError(f"{path}:{number}: expected space-separated unit ids") from None
    values = np.concatenate(rows) if rows else np.empty(0, np.int64)
    return values, np.array([len(r) for r in rows], np.int64)


def _check_storable(path: Path, values: np.ndarray, per_line: np.ndarray, before: int, dtype: np.dtype,
                    num_units: int) -> None:
    """LabelError naming the line of the first id that is negative or too large for `dtype`."""
    wrong = np.flatnonzero((values < 0) | (values > np.iinfo(dtype).max))
    if len(wrong):
        line = before + int(np.searchsorted(np.cumsum(per_line), wrong[0], side="right")) + 1
        raise LabelError(f"{path}:{line}: unit id {values[wrong[0]]} outside the dictionary of {num_units} "
                         "units; give the number of units of the teacher that made these labels "
                         "(labels.json num_units, --num-units)")

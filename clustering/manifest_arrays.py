"""A manifest's utterances as memory-mapped arrays: sizes, and relative paths as one byte blob.

`SPLIT.tsv.arrays` beside `SPLIT.tsv` (the format: flat_arrays) holds
  sizes         (utterances,) int64: 16 kHz samples of each utterance
  paths         (bytes,) uint8: the UTF-8 relative paths, one after the other
  path_offsets  (utterances + 1,) int64: path i is paths[path_offsets[i]:path_offsets[i + 1]]
  lines         (utterances,) int64, only for a manifest with blank lines: the file line of each
The audio root stays out of the arrays: readers take it from the manifest's first line, so
pointing a manifest at a moved corpus (`reroot_manifest`) rewrites that line and rebuilds nothing.

`open_manifest` maps them (building them first when they are missing or stale); the text stays the
interface (fairseq's format) and what the arrays are checked against.
"""
from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np

from .atomic import atomic_file
from .flat_arrays import (ArrayWriter, arrays_path, line_bounds, offsets_fit, open_or_build, restamp, run_values,
                          text_chunks, text_stamp)
from .manifest import Manifest, check_root_line, read_manifest

ODD_BYTES = (b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e")  # str.splitlines splits there too
ODD_LINE_BREAKS = ("\x85", "\u2028", "\u2029")  # and there, beyond ASCII


class ManifestArrays:
    """An audio root and its utterances, read from memory-mapped arrays: what the trainer and the
    label checks ask of a `Manifest` (`root`, `sizes`, `paths`, `audio_path`, `line_number`), with
    no Python object per utterance. `sizes` is a read-only int64 array."""

    def __init__(self, source: Path, root: Path, arrays: dict[str, np.ndarray]):
        self.source, self.root = source, root
        self.sizes = arrays["sizes"]
        self._blob, self._offsets = arrays["paths"], arrays["path_offsets"]
        self._lines = arrays.get("lines")

    def __len__(self) -> int:
        return len(self.sizes)

    def __reduce__(self):
        """Pickled as its path (a process started by spawn maps the arrays itself, copying nothing)."""
        return open_manifest, (self.source,)

    def relpath(self, index: int) -> str:
        return bytes(self._blob[self._offsets[index]:self._offsets[index + 1]]).decode("utf-8")

    @property
    def paths(self) -> "RelativePaths":
        return RelativePaths(self)

    def audio_path(self, index: int) -> Path:
        return self.root / self.relpath(index)

    def line_number(self, index: int) -> int:
        return int(self._lines[index]) if self._lines is not None else index + 2


class RelativePaths:
    """`manifest.paths` of a ManifestArrays: relative path i, decoded when asked for."""

    def __init__(self, manifest: ManifestArrays):
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, index: int) -> str:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.manifest.relpath(index % len(self))


def open_manifest(path: str | Path) -> ManifestArrays:
    """The manifest `path` (SPLIT.tsv) as memory-mapped arrays: its SPLIT.tsv.arrays when they were
    built from the manifest as it is now, else rebuilt from it first (ManifestError for a malformed
    manifest, as `read_manifest`)."""
    return _open(Path(path), rebuild=False)


def write_manifest_arrays(path: str | Path) -> ManifestArrays:
    """Build `path`.arrays from the manifest `path` (replacing any), atomically, and open them."""
    return _open(Path(path), rebuild=True)


def _open(path: Path, rebuild: bool) -> ManifestArrays:
    if not path.is_file():
        read_manifest(path)  # raises the error that says what is wrong with the path
    root = _root(path)
    return ManifestArrays(path, root, open_or_build(path, partial(_build, path), _consistent, rebuild)[1])


def _consistent(facts: dict, arrays: dict[str, np.ndarray]) -> bool:
    """Whether the arrays agree with each other: one size, path and line (if any) per utterance."""
    count = len(arrays.get("sizes", ()))
    return ({"sizes", "paths", "path_offsets"} <= set(arrays) and facts.get("utterances") == count
            and len(arrays.get("lines", arrays["sizes"])) == count
            and offsets_fit(arrays["path_offsets"], count, len(arrays["paths"])))


def reroot_manifest(path: str | Path, root: str | Path) -> bool:
    """Point the manifest `path` at `root` (its first line), keeping its arrays (the root is not in
    them). Returns whether the manifest changed."""
    path, root = Path(path), Path(root).resolve()
    if _root(path) == root:
        return False
    before = text_stamp(path)
    with open(path, "rb") as source, atomic_file(path) as out:
        source.readline()
        out.write(f"{root}\n".encode("utf-8"))
        shutil.copyfileobj(source, out)
    if not restamp(arrays_path(path), before, text_stamp(path)):
        write_manifest_arrays(path)  # they were stale already
    return True


def _root(path: Path) -> Path:
    with open(path, "rb") as f:
        first = f.readline()
    try:
        line = first.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError:
        read_manifest(path)  # raises: not UTF-8
        raise
    return check_root_line(path, line.splitlines()[0] if line.splitlines() else "")


def _build(path: Path, target: Path, stamp: dict) -> Path:
    """Write the arrays of manifest `path` to `target`: parsed with numpy, or, for anything unusual
    (blank lines, spaces around a size, odd line breaks) or wrong, through `read_manifest`, which
    accepts or names the line exactly as everywhere else."""
    with open(path, "rb") as f, ArrayWriter(target) as out:
        first = f.readline()
        if len(first.decode("utf-8", "replace").rstrip("\n").splitlines()) > 1:
            out.discard()
            return _build_from(read_manifest(path), target, stamp)
        sizes, lengths = [], []
        for chunk in text_chunks(f, len(first)):
            parsed = _parse_lines(chunk)
            if parsed is None:
                out.discard()
                return _build_from(read_manifest(path), target, stamp)
            out.append("paths", parsed[1])
            sizes.append(parsed[0])
            lengths.append(parsed[2])
        _finish(out, sizes, lengths)
        return out.commit(stamp, {"utterances": sum(map(len, sizes))})


def _finish(out: ArrayWriter, sizes: list[np.ndarray], lengths: list[np.ndarray]) -> None:
    if "paths" not in out.arrays:
        out.append("paths", np.empty(0, np.uint8))
    out.append("sizes", np.concatenate(sizes or [np.empty(0, np.int64)]))
    counts = np.concatenate(lengths or [np.empty(0, np.int64)])
    out.append("path_offsets", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def _build_from(manifest: Manifest, target: Path, stamp: dict) -> Path:
    """The arrays of a manifest read by `read_manifest` (the careful, per-line path)."""
    encoded = [p.encode("utf-8") for p in manifest.paths]
    with ArrayWriter(target) as out:
        out.append("paths", np.frombuffer(b"".join(encoded), np.uint8))
        _finish(out, [np.asarray(manifest.sizes, np.int64)], [np.array([len(e) for e in encoded], np.int64)])
        lines = np.asarray([manifest.line_number(i) for i in range(len(manifest))], np.int64)
        if not np.array_equal(lines, np.arange(len(manifest)) + 2):
            out.append("lines", lines)
        return out.commit(stamp, {"utterances": len(manifest)})


def _parse_lines(chunk: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(sizes int64, path bytes uint8, path lengths int64) of manifest lines `chunk` (whole lines,
    `relpath<TAB>digits[<TAB>...]` each); None for anything else, left to `read_manifest`."""
    if not _plain_text(chunk):
        return None
    text = np.frombuffer(chunk, np.uint8)
    starts, ends = line_bounds(text)
    tabs = np.flatnonzero(text == ord("\t"))
    after = np.searchsorted(tabs, starts)
    if not len(tabs) or (after >= len(tabs)).any():
        return None
    first = tabs[after]
    field_end = np.minimum(ends, tabs[np.minimum(after + 1, len(tabs) - 1)])
    field_end = np.where(field_end > first, field_end, ends)
    if (first >= ends).any() or (first == starts).any():
        return None
    sizes = run_values(text, first + 1, field_end)  # None unless each size field is digits alone
    if sizes is None or (sizes <= 0).any():
        return None
    marks = np.zeros(len(text), np.int8)
    marks[starts] = 1
    marks[first] = -1
    in_path = np.cumsum(marks, dtype=np.int8).view(bool)
    return sizes, text[in_path], (first - starts).astype(np.int64)


def _plain_text(chunk: bytes) -> bool:
    """Whether `chunk` is UTF-8 whose only line breaks are newlines (nothing str.splitlines splits
    elsewhere) and has no carriage return (both left to the careful path)."""
    if any(mark in chunk for mark in ODD_BYTES):
        return False
    if chunk.isascii():
        return True
    try:
        decoded = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(mark in decoded for mark in ODD_LINE_BREAKS)

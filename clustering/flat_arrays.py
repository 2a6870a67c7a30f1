"""Flat arrays beside a text file, in one file that says which text it was built from.

`NAME.arrays` beside a text file `NAME` (a manifest `SPLIT.tsv`, a label file `SPLIT.km`)
holds named one-dimensional arrays that readers open with `numpy.memmap`, read-only: the
pages are the kernel's page cache, shared by every process that maps them, so a loader
worker holds no copy of them, whatever their length.

Layout: the arrays, each starting on a 64-byte boundary, then a JSON header (each array's
dtype, offset and length; the text's size and modification time; the builder's facts), the
header's length (8 bytes, little-endian) and the tag MAGIC. A file is written under a
temporary name and renamed into place, so a reader sees a whole file or none, and two writers
racing leave one of two identical files. A file whose tag or header is missing (truncated), or
whose recorded size and modification time differ from its text's now (the text was rewritten,
touched or replaced), is not read: `read_arrays` says None and the caller rebuilds it from the
text.

Also here: what the builders of manifests and label files share to read text with numpy, no
Python loop per line: whole-line chunks, line bounds, decimal fields.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from .atomic import atomic_file

SUFFIX = ".arrays"
MAGIC = b"HUBARR1\n"
ALIGN = 64
TAIL = struct.Struct("<Q8s")  # header length, MAGIC
VERSION = 1
MAX_DIGITS = 18  # a run of at most 18 digits fits int64
CHUNK_BYTES = 16 * 2**20  # text read per step by the builders


def arrays_path(text_path: str | Path) -> Path:
    """Where the arrays of `text_path` live: beside it, `NAME.arrays`."""
    text_path = Path(text_path)
    return text_path.with_name(text_path.name + SUFFIX)


def text_stamp(text_path: str | Path) -> dict:
    """What identifies a version of a text file: its size and modification time (ns)."""
    status = os.stat(text_path)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


class ArrayWriter:
    """Named arrays streamed into a temporary file beside `target`; `commit` renames it into place.

    Arrays are written one after the other: `append(name, values)` adds values to array `name`
    (begun by its first append; an array cannot be resumed once another has begun). Used as a
    context manager, the temporary file is removed when the block raises.
    """

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.temporary = temporary_name(self.target)
        self.file = open(self.temporary, "xb")
        self.arrays: dict[str, list] = {}  # name -> [dtype, offset, count]
        self.current = None

    def append(self, name: str, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values)
        if name != self.current:
            if name in self.arrays:
                raise ValueError(f"array {name!r} was already written; write each array in one run")
            self.file.write(b"\0" * (-self.file.tell() % ALIGN))
            self.arrays[name] = [values.dtype.str, self.file.tell(), 0]
            self.current = name
        if values.dtype.str != self.arrays[name][0]:
            raise ValueError(f"array {name!r} is {self.arrays[name][0]}, got {values.dtype.str}")
        self.file.write(memoryview(values).cast("B"))
        self.arrays[name][2] += len(values)

    def commit(self, stamp: dict, facts: dict) -> Path:
        """Write the header (`stamp`: the text's `text_stamp`; `facts`: the builder's own) and
        rename the file into place."""
        header = json.dumps({"version": VERSION, "source": stamp, "arrays": self.arrays, "facts": facts}).encode()
        self.file.write(header + TAIL.pack(len(header), MAGIC))
        self.file.close()
        os.replace(self.temporary, self.target)
        return self.target

    def discard(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)

    def __enter__(self) -> "ArrayWriter":
        return self

    def __exit__(self, kind, error, trace) -> bool:
        if kind is not None:
            self.discard()
        return False


def read_arrays(path: str | Path, stamp: dict) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(facts, {name: read-only memory-mapped array}) of the arrays file `path`, or None when it
    is missing, truncated, malformed, or was built from a text other than the one with `stamp`."""
    path = Path(path)
    header = _header(path)
    if header is None or header.get("version") != VERSION or header.get("source") != stamp:
        return None
    end = path.stat().st_size - TAIL.size - header["length"]
    arrays = {}
    for name, (dtype, offset, count) in header["arrays"].items():
        dtype = np.dtype(dtype)
        if offset < 0 or count < 0 or offset + count * dtype.itemsize > end:
            return None
        arrays[name] = np.memmap(path, dtype, "r", offset, (count,)) if count else np.empty(0, dtype)
    return header["facts"], arrays


def open_or_build(text_path: str | Path, build: Callable[[Path, dict], object],
                  consistent: Callable[[dict, dict[str, np.ndarray]], bool], rebuild: bool = False
                  ) -> tuple[dict, dict[str, np.ndarray]]:
    """(facts, arrays) of `text_path`'s arrays file, first built by `build(target, stamp)` when it is
    missing, stale or not `consistent(facts, arrays)` (always with `rebuild`). Where the text's folder
    cannot be written, the arrays are built in a private temporary folder, mapped, and removed (the
    mappings live on)."""
    text_path = Path(text_path)
    stamp = text_stamp(text_path)  # taken before the text is read: a text changed meanwhile leaves stale arrays
    target = arrays_path(text_path)
    found = None if rebuild else read_arrays(target, stamp)
    if found is not None and consistent(*found):
        return found
    try:
        build(target, stamp)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        target = Path(tempfile.mkdtemp()) / target.name
        try:
            build(target, stamp)
            return read_arrays(target, stamp)
        finally:
            shutil.rmtree(target.parent)
    found = read_arrays(target, stamp)
    if found is None:  # replaced meanwhile by a process that saw a newer text
        return open_or_build(text_path, build, consistent)
    return found


def offsets_fit(offsets: np.ndarray, count: int, total: int, block: int = 2**22) -> bool:
    """Whether `offsets` cut `total` items into `count` runs: count + 1 of them, from 0 to `total`,
    never falling (checked a block at a time)."""
    if len(offsets) != count + 1 or offsets[0] != 0 or offsets[-1] != total:
        return False
    return all((np.diff(offsets[b:b + block + 1]) >= 0).all() for b in range(0, count, block))


def _header(path: Path) -> dict | None:
    """The JSON header of an arrays file (with its byte length as "length"), or None."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < TAIL.size:
                return None
            f.seek(size - TAIL.size)
            length, magic = TAIL.unpack(f.read(TAIL.size))
            if magic != MAGIC or length > size - TAIL.size:
                return None
            f.seek(size - TAIL.size - length)
            header = json.loads(f.read(length))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), dict):
        return None
    return {**header, "length": length}


def restamp(path: str | Path, old: dict, new: dict) -> bool:
    """Re-record the arrays file `path`, built from a text with stamp `old`, as built from the text
    with stamp `new` (a text rewritten where the arrays do not look: a manifest's root line), by a
    copy renamed into place. False, and nothing written, when `path` is not whole or not `old`'s."""
    path = Path(path)
    header = _header(path)
    if header is None or header.get("version") != VERSION or header.get("source") != old:
        return False
    body = path.stat().st_size - TAIL.size - header["length"]
    updated = json.dumps({"version": VERSION, "source": new, "arrays": header["arrays"],
                          "facts": header["facts"]}).encode()
    with atomic_file(path) as out, open(path, "rb") as source:
        _copy(source, out, body)
        out.write(updated + TAIL.pack(len(updated), MAGIC))
    return True


def temporary_name(target: Path) -> Path:
    """A name beside `target` no other writer uses (this process's id and a random tag)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _copy(source, out, count: int, block: int = 2**24) -> None:
    while count > 0:
        data = source.read(min(block, count))
        if not data:
            raise OSError(f"{source.name}: shorter than its header says")
        out.write(data)
        count -= len(data)


def text_chunks(f, first: int = 0, size: int = CHUNK_BYTES):
    """Whole lines of the binary file `f` from byte `first`, about `size` bytes at a time, each
    chunk ending with a newline (one is added after a last line that lacks it)."""
    f.seek(first)
    rest = b""
    while True:
        data = f.read(size)
        if not data:
            if rest:
                yield rest + b"\n"
            return
        data = rest + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        rest = data[cut:]
        yield data[:cut]


def line_bounds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte offsets of each line of `text` (uint8, ending with a newline); end is the newline."""
    ends = np.flatnonzero(text == ord("\n"))
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    return starts, ends


def run_values(text: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """The unsigned decimal number in each run text[starts[i]:ends[i]], int64; None when a run is
    empty, longer than MAX_DIGITS, or holds a byte that is not a digit."""
    lengths = ends - starts
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > MAX_DIGITS or (len(lengths) and lengths.min() < 1):
        return None
    values = np.zeros(len(starts), np.int64)
    for k in range(longest):  # Horner's rule, one digit position of every run per step
        active = lengths > k
        digits = text[np.where(active, starts + k, 0)].astype(np.int64) - ord("0")
        if ((digits < 0) | (digits > 9))[active].any():
            return None
        values = np.where(active, values * 10 + digits, values)
    return values

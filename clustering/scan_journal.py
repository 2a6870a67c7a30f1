"""A folder scan's per-file results on disk as they come, so a killed scan resumes.

One line per file, `relpath<TAB>size<TAB>mtime_ns<TAB>samples<TAB>reason` (reason empty for a
good file), appended as each result comes and flushed every JOURNAL_CHUNK files; keyed by
(relpath, size, mtime_ns), so a file changed since is decoded again.
"""
from __future__ import annotations

import os
from pathlib import Path

JOURNAL_NAME = "scan-journal.tsv"  # what a pipeline calls the journal it keeps for a folder scan
JOURNAL_CHUNK = 64  # files between two flushes


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of `path`; None when it cannot be read (the probe will say why)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


class ScanJournal:
    """The journal at `path`: `read` what it holds; as a context manager, `add` results (a scan
    killed at any point keeps all but its last JOURNAL_CHUNK); `keep_only` rewrites it
    (atomically) with the results of a finished scan."""

    def __init__(self, path: str | Path):
        self.path, self.file, self.pending = Path(path), None, 0

    def read(self) -> dict[tuple[str, tuple[int, int]], tuple[int, str]]:
        """{(relpath, (size, mtime_ns)): (samples, reason)}; a torn or malformed line is skipped."""
        found = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return found
        for line in text.split("\n"):
            fields = line.split("\t")
            if len(fields) == 5 and all(f.isdigit() for f in fields[1:4]):
                found[(fields[0], (int(fields[1]), int(fields[2])))] = (int(fields[3]), fields[4])
        return found

    def __enter__(self) -> "ScanJournal":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "ab+")
        if self.file.tell():
            self.file.seek(-1, os.SEEK_END)
            if self.file.read(1) != b"\n":
                self.file.write(b"\n")  # after a torn last line
        return self

    def add(self, relpath: str, stamp: tuple[int, int] | None, result: tuple[int, str]) -> None:
        line = _journal_line(relpath, stamp, result)
        if line is None:
            return
        self.file.write(line.encode("utf-8"))
        self.pending += 1
        if self.pending >= JOURNAL_CHUNK:
            self._flush()

    def _flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.pending = 0

    def __exit__(self, *exc) -> bool:
        self._flush()
        self.file.close()
        return False

    def keep_only(self, results: dict[tuple[str, tuple[int, int] | None], tuple[int, str]]) -> None:
        lines = [_journal_line(rel, stamp, result) for (rel, stamp), result in results.items()]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line for line in lines if line), encoding="utf-8")
        os.replace(tmp, self.path)


def _journal_line(relpath: str, stamp: tuple[int, int] | None, result: tuple[int, str]) -> str | None:
    """A journal line, or None for what a line cannot hold (no stamp, a tab or newline in the path)."""
    if stamp is None or "\t" in relpath or "\n" in relpath:
        return None
    return f"{relpath}\t{stamp[0]}\t{stamp[1]}\t{result[0]}\t{result[1]}\n"

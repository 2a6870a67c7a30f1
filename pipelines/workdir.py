"""The work folder's housekeeping: one run at a time, superseded training kept aside, pruning.

`WORK_DIR/run.lock` is held (flock) by the running `hubert run` and names it;
`WORK_DIR/superseded/<stage>-<UTC time>/` holds training folders a rerun had to
start over from, untouched (same bytes, same modification times) until
`hubert prune` removes them.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

LOCK = "run.lock"
SUPERSEDED = "superseded"


class WorkDirBusy(ValueError):
    """Another process is running in this work folder; the message names it."""


@contextlib.contextmanager
def work_lock(work_dir: Path):
    """Hold `work_dir/run.lock` for the block, or raise WorkDirBusy naming the holder.

    flock is released by the kernel when the process dies, so a crash never leaves a stale lock.
    """
    path = Path(work_dir) / LOCK
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise WorkDirBusy(f"{work_dir}: in use by {_holder(handle.read())}; wait for it to finish or "
                              "stop it (one run per work folder)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv)}) + "\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']} (since {info['since']}: {info['command']})"
    except (ValueError, KeyError):
        return "another process"


def move_aside(folder: Path) -> Path:
    """Move `folder` to WORK_DIR/superseded/<name>-<UTC time>/ (a rename: bytes and times kept)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    parent = folder.parent / SUPERSEDED
    parent.mkdir(exist_ok=True)
    target = parent / f"{folder.name}-{stamp}"
    number = 1
    while target.exists():
        number += 1
        target = parent / f"{folder.name}-{stamp}-{number}"
    os.rename(folder, target)
    return target


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def superseded(work_dir: str | Path) -> list[tuple[Path, int]]:
    """(folder, bytes) of every superseded run in `work_dir`, oldest first."""
    parent = Path(work_dir) / SUPERSEDED
    folders = sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    return [(p, folder_bytes(p)) for p in folders]


def prune(work_dir: str | Path) -> list[tuple[Path, int]]:
    """Delete the superseded runs of `work_dir` (only those: we wrote them); returns what went."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise FileNotFoundError(f"{work_dir}: no such work folder")
    with work_lock(work_dir):
        gone = superseded(work_dir)
        for folder, _ in gone:
            shutil.rmtree(folder)
    return gone


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"

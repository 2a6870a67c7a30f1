"""The work folder's housekeeping: whose folder it is, one run at a time, superseded work kept
aside, pruning.

A work folder is ours when it carries the toolkit's marker (clustering/ownership.py), or when
an earlier version's run left its `stages.json` there; any other folder with files in it is
refused. `WORK_DIR/run.lock` is held (flock) by the running `hubert run` and names it;
`WORK_DIR/superseded/<stage>-<UTC time>/` holds stage folders a rerun had to start over from,
untouched (same bytes, same modification times) until `hubert prune` removes them.
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

from clustering.ownership import MARKER, NotOurs, claim, marker_kind, move_aside as rename_aside

LOCK = "run.lock"
SUPERSEDED = "superseded"
ORDER = "stages.json"  # the stage order of the last run, for `hubert status`
STAGE_RECORDS = ("STARTED.json", "DONE.json")


class WorkDirBusy(ValueError):
    """Another process is running in this work folder; the message names it."""


def claim_work_folder(work_dir: str | Path, what: str = "work_dir") -> Path:
    """`work_dir` made or accepted as a work folder of ours (NotOurs for anyone else's folder)."""
    return claim(work_dir, "work", what, earlier=lambda folder: (folder / ORDER).is_file())


def is_work_folder(work_dir: Path) -> bool:
    return marker_kind(work_dir) == "work" or (work_dir / ORDER).is_file()


def is_stage_folder(folder: Path) -> bool:
    """A stage folder of ours: marked, or holding a STARTED/DONE record of an earlier version."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return marker_kind(folder) == "stage" or any(_record(folder / name) for name in STAGE_RECORDS)


def _record(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "hash" in data


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


def lock_holder(work_dir: Path) -> str | None:
    """Who holds `work_dir/run.lock` now ("process 123 on host (since ...)"), or None when no one does.
    Reads only: a missing lock file is not created."""
    try:
        handle = open(Path(work_dir) / LOCK)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(handle.read())
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']} (since {info['since']}: {info['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def move_aside(folder: Path) -> Path:
    """Move our stage `folder` to WORK_DIR/superseded/<name>-<UTC time>/ (a rename: bytes and times kept)."""
    parent = folder.parent / SUPERSEDED
    parent.mkdir(exist_ok=True)
    return rename_aside(folder, parent)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def superseded(work_dir: str | Path) -> tuple[list[tuple[Path, int]], list[Path]]:
    """([(folder, bytes)] of the superseded runs of `work_dir`, oldest first; [other entries of
    superseded/, which hubert did not put there and leaves alone])."""
    parent = Path(work_dir) / SUPERSEDED
    if not parent.is_dir() or parent.is_symlink():
        return [], []
    entries = sorted(parent.iterdir())
    ours = [p for p in entries if is_stage_folder(p)]
    others = [p for p in entries if p not in ours]
    return [(p, folder_bytes(p)) for p in ours], others


def prune(work_dir: str | Path) -> tuple[list[tuple[Path, int]], list[Path]]:
    """Delete the superseded runs of our work folder `work_dir` (only folders a rerun moved there);
    returns (what went, what was left alone). NotOurs, touching nothing, for any other folder."""
    work_dir = Path(work_dir).expanduser()
    if not work_dir.is_dir():
        raise FileNotFoundError(f"{work_dir}: no such work folder")
    if not is_work_folder(work_dir):
        raise NotOurs(f"{work_dir}: not the work folder of a `hubert run` (it has neither hubert's {MARKER} "
                      f"nor {ORDER}); nothing was removed")
    with work_lock(work_dir):
        gone, others = superseded(work_dir)
        for folder, _ in gone:
            shutil.rmtree(folder)
    return gone, others


def human_bytes(count: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"

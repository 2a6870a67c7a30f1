"""Atomic writes: a file appears whole under its name or not at all.

Every writer goes through `atomic_write`: it writes to a temporary name beside the target,
unique to this process (so two identical jobs on one folder never write into each other's
file: the last rename wins, with the same bytes), renames it into place when complete, and
removes it on any error. A full disk is reported in one line naming the file, the space left
and the fix. A temporary file left by a killed process of this machine is removed by the
next write of the same file.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

# errors of a write that ran out of room, and what to tell the user
_NO_ROOM = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
            errno.EFBIG: "the file would exceed the file-size limit (ulimit -f)"}


class WriteError(OSError):
    """A file that could not be written for lack of room; the message names it and the fix."""


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; rename it onto `path` when the block ends.

    On an error the temporary file is removed and the error raised again; one of a full disk
    (or file-size limit) becomes a WriteError naming `path` and the free space left.
    """
    path = Path(path)
    _remove_stale(path)
    tmp = path.with_name(f"{path.name}.{_owner()}-{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError) and error.errno in _NO_ROOM:
            raise no_room(path, error) from None
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator:
    """`atomic_write` with the temporary file opened (`mode`): readers see the old file or the whole new
    one, and writers racing never share a temporary file."""
    with atomic_write(path) as tmp, open(tmp, mode.replace("w", "x")) as f:
        yield f


def no_room(path: Path, error: OSError) -> WriteError:
    """The one-line error for `path` not written because `error` (ENOSPC, EDQUOT, EFBIG)."""
    try:
        free = _size(shutil.disk_usage(path.parent).free)
    except OSError:
        free = "unknown space"
    return WriteError(f"{path}: not written: {_NO_ROOM.get(error.errno, error.strerror)} ({free} free on its "
                      "disk); free some space or choose a folder on another disk, then rerun (no partial "
                      "file was left)")


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _owner() -> str:
    return socket.gethostname().replace("-", "_")


def _remove_stale(path: Path) -> None:
    """Remove temporary files of `path` left by processes of this machine that no longer run."""
    prefix = f"{path.name}.{_owner()}-"
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):-len(".tmp")]
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _size(num_bytes: int) -> str:
    if num_bytes >= 2**30:
        return f"{num_bytes / 2**30:.1f} GiB"
    return f"{num_bytes / 2**20:.1f} MiB"

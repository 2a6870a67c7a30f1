"""Checkpoints: written atomically, the last few and the best kept, read with weights_only.

Files: `DIR/update_0000300.pt` (every save), `DIR/best.pt` (lowest valid loss).
Resuming takes the newest file that loads; a truncated or corrupt one is
reported and the one before it used.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .run_files import BEST, CHECKPOINT_PATTERN


def checkpoint_path(directory: Path, update: int) -> Path:
    return Path(directory) / f"update_{update:07d}.pt"


def checkpoint_paths(directory: str | Path) -> list[Path]:
    """The numbered checkpoints in `directory`, oldest first."""
    return sorted(Path(directory).glob(CHECKPOINT_PATTERN))


def checkpoint_update(path: Path) -> int:
    """The update a checkpoint file was written at, from its name."""
    return int(Path(path).stem.removeprefix("update_"))


def save_checkpoint(state: dict, directory: str | Path, update: int, keep_last: int) -> Path:
    """Write `state` for `update` atomically; prune the numbered checkpoints to `keep_last`."""
    path = checkpoint_path(directory, update)
    _atomic_save(state, path)
    for old in checkpoint_paths(directory)[:-keep_last] if keep_last > 0 else []:
        old.unlink()
    return path


def save_best(state: dict, directory: str | Path) -> Path:
    """Write `DIR/best.pt` atomically: the weights of the lowest valid loss so far."""
    path = Path(directory) / BEST
    _atomic_save(state, path)
    return path


def _atomic_save(state: dict, path: Path) -> None:
    """torch.save to a temporary name, fsync, rename: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_latest(directory: str | Path, log=print) -> dict | None:
    """The newest checkpoint in `directory` that loads, or None when there is none."""
    for path in reversed(checkpoint_paths(directory)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated zip, bad pickle, ...
            log(f"warning: {path} is unreadable ({type(error).__name__}: {error}); "
                "falling back to the previous checkpoint")
    return None


def latest_path(directory: str | Path) -> Path | None:
    """Newest checkpoint file (for exports), or None."""
    found = checkpoint_paths(directory)
    return found[-1] if found else None

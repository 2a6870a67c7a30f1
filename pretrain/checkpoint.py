"""Checkpoints: written atomically, the last few and the best kept, read with weights_only.

Files: `DIR/update_0000300.pt` (every save), `DIR/best.pt` (lowest valid loss).
Resuming takes the newest file that loads; a truncated or corrupt one is
reported and the one before it used.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

PATTERN = "update_*.pt"


def checkpoint_path(directory: Path, update: int) -> Path:
    return Path(directory) / f"update_{update:07d}.pt"


def checkpoint_paths(directory: str | Path) -> list[Path]:
    """The numbered checkpoints in `directory`, oldest first."""
    return sorted(Path(directory).glob(PATTERN))


def checkpoint_update(path: Path) -> int:
    """The update a checkpoint file was written at, from its name."""
    return int(Path(path).stem.removeprefix("update_"))


def save_checkpoint(state: dict, directory: str | Path, update: int, keep_last: int,
                    best: bool = False) -> Path:
    """Write `state` for `update` (temporary file, fsync, rename); prune to `keep_last`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, update)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if best:
        shutil.copyfile(path, directory / "best.pt.tmp")
        os.replace(directory / "best.pt.tmp", directory / "best.pt")
    for old in checkpoint_paths(directory)[:-keep_last] if keep_last > 0 else []:
        old.unlink()
    return path


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

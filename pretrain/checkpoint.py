"""Checkpoints: written atomically, the last few and the best kept, read with weights_only.

Files: `DIR/update_0000300.pt` (every save), `DIR/best.pt` (lowest valid loss).
Resuming takes the newest file that loads; a truncated or corrupt one is
reported and the one before it used.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from clustering.atomic import atomic_write

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
    """torch.save to a temporary name, fsync, rename: a crash leaves the old file or the new one; a
    full disk leaves no temporary file and raises one line (`atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        stream = _WriteErrors(f)
        try:
            torch.save(state, stream)
        except RuntimeError:  # torch reports a failed write as "[enforce fail ...] unexpected pos"
            if stream.error is not None:
                raise stream.error from None
            raise
        f.flush()
        os.fsync(f.fileno())


class _WriteErrors:
    """A file object for torch.save that keeps the OSError of a failed write, which torch replaces
    by its own text naming no file and no cause."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def load_fused_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load `saved` (an optimizer state dict) into a fused `optimizer`, whatever saved it.

    torch moves `step` to the parameter's device only when the saved groups say fused or
    capturable; a checkpoint from before fused AdamW says fused=None and holds `step` as a CPU
    tensor (or, older still, a number), which the fused CUDA kernel must not be handed. So the
    groups stay fused and every `step` becomes a float32 tensor on its parameter's device."""
    optimizer.load_state_dict(saved)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            if "step" in state:
                state["step"] = torch.as_tensor(state["step"], dtype=torch.float32, device=param.device)


def load_latest(directory: str | Path, log=print) -> dict | None:
    """The newest checkpoint in `directory` that loads, or None when there is none."""
    for path in reversed(checkpoint_paths(directory)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated zip, bad pickle, ...
            log(f"warning: {path} is unreadable ({type(error).__name__}: {error}); "
                "falling back to the previous checkpoint")
    return None


def latest_path(directory: str | Path, log=print) -> Path | None:
    """Newest readable checkpoint file (for exports, layer features, scans), or None; a newer one
    that is not a whole torch zip (truncated by a crash or a full disk) is skipped, said in `log`,
    as the trainer's resume skips it."""
    for path in reversed(checkpoint_paths(directory)):
        problem = unreadable(path)
        if not problem:
            return path
        log(f"warning: {path} is unreadable ({problem}); using the previous checkpoint")
    return None


def unreadable(path: Path) -> str:
    """Why `path` is not a whole checkpoint as torch.save writes it (a zip archive), "" when it is one.

    Cheap: a zip's table of contents sits at its end, so a truncated file fails here at once,
    without reading the weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        return str(error) or type(error).__name__
    return ""

"""Staged runs under torchrun: one process group and one run id for the whole run, and feature
and label stages spread over the workers: each computes its shard of the manifest (fairseq's line
ranges), worker 0 waits for the others' files, then merges or records them.

Waiting is done on files, not collectives, so a long step on worker 0 (fitting k-means) never
trips a collective timeout on the others; without torchrun there is one worker and one shard.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path

SHARDS = "shards.json"


def worker() -> tuple[int, int]:
    """(rank, number of workers) of this process: torchrun's, or (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def torchrun_group():
    """Under torchrun, one process group for the whole run (stages and training share it)."""
    if worker()[1] <= 1:
        yield
        return
    import torch
    import torch.distributed as dist

    from pretrain.distributed import BACKENDS

    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(BACKENDS if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()


def shared_run_id(mine: str | None) -> str:
    """Worker 0's run id on every torchrun worker (a broadcast in the run's group); `mine` alone otherwise."""
    if worker()[1] <= 1:
        return mine or new_run_id()
    import torch
    import torch.distributed as dist

    value = torch.tensor([int(mine, 16) if mine else 0], dtype=torch.int64)
    dist.broadcast(value, src=0)
    return f"{int(value.item()):012x}"


def worker_device(device: str) -> str:
    """`device` for this worker: a torchrun worker's GPU is cuda:LOCAL_RANK."""
    import torch

    wants_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if wants_gpu and worker()[1] > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def wait_for(paths: list[Path], poll: float = 2.0) -> None:
    """Return once every path exists (the other workers' shards)."""
    while True:
        missing = [p for p in paths if not p.exists()]
        if not missing:
            return
        time.sleep(poll)


def record_shards(folder: Path, nshard: int) -> None:
    """Say how many shards the stage's files were written in, for the stages that read them."""
    (folder / SHARDS).write_text(json.dumps({"nshard": nshard}) + "\n")


def shard_count(folder: Path) -> int:
    """The number of shards a stage folder's files were written in (1 when not recorded)."""
    path = folder / SHARDS
    return int(json.loads(path.read_text())["nshard"]) if path.exists() else 1

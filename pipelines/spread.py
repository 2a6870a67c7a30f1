"""Feature and label stages spread over torchrun workers: each computes its shard of the manifest
(fairseq's line ranges), worker 0 waits for the others' files, then merges or records them.

Waiting is done on files, not collectives, so a long step on worker 0 (fitting k-means) never
trips a collective timeout on the others; without torchrun there is one worker and one shard.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

SHARDS = "shards.json"


def worker() -> tuple[int, int]:
    """(rank, number of workers) of this process: torchrun's, or (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


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

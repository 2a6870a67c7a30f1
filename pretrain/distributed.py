"""torchrun / DDP plumbing: which worker this is, and sums over all workers."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Workers:
    rank: int
    world: int
    device: torch.device
    owns_group: bool = False  # this call made the process group (and so tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over workers (float64 on the worker's device)."""
        values = values.to(self.device, torch.float64)
        if self.world > 1:
            dist.all_reduce(values)
        return values


def setup_workers(device: str = "auto") -> Workers:
    """Join the torchrun group when launched by torchrun (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local)
        chosen = torch.device("cuda", local)
    else:
        chosen = torch.device(device)
    owns = world > 1 and not dist.is_initialized()
    if owns:  # a group made before (a pipeline's, see BACKENDS) is used as it is
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Workers(rank, world, chosen, owns)


def teardown_workers(workers: Workers) -> None:
    if workers.owns_group and dist.is_initialized():
        dist.destroy_process_group()


# CPU tensors through gloo, CUDA tensors through nccl: one group serves both, so a pipeline can make
# it once for its whole run (re-creating a group on torchrun's store collides with the old one's keys).
BACKENDS = "cpu:gloo,cuda:nccl"

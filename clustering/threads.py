"""torch's CPU thread count, set for a block and restored after it."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with `count` torch CPU threads. Loops of small element-wise steps (the DTWs,
    the bootstrap) run faster on one thread than on several that other processes share."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)

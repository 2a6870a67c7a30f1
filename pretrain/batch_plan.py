"""Batches of an epoch planned from utterance lengths alone, in numpy, kept in shared memory.

`plan_batches` sorts the utterances by length (ties broken by a seeded permutation), cuts them
greedily into batches of at most `max_tokens` samples (longest x count) and shuffles the batch
order, all from (seed, epoch): any worker can tell which utterances form global batch i, so a
resumed run, or 2 workers instead of 1 with accumulation 2, see the same data. No Python object
per utterance: a plan is three int64 arrays in memory shared with forked processes, so a
trainer's DataLoader workers neither copy nor count it.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np


def shared_array(length: int, dtype) -> np.ndarray:
    """A zeroed (length,) array in memory shared with forked processes (an anonymous MAP_SHARED
    mapping): DataLoader workers neither copy it nor count it in their own memory (RssAnon)."""
    dtype = np.dtype(dtype)
    if length * dtype.itemsize == 0:
        return np.zeros(length, dtype)
    return np.frombuffer(mmap.mmap(-1, length * dtype.itemsize), dtype, length)


def shared_copy(values: np.ndarray) -> np.ndarray:
    """`values` (1-D) copied into a `shared_array`."""
    copy = shared_array(len(values), values.dtype)
    copy[:] = values
    return copy


@dataclass(frozen=True)
class BatchPlan:
    """The batches of one epoch: batch i holds items order[bounds[b]:bounds[b + 1]] with b = sequence[i].

    order: (items,) int64, the items sorted by length; bounds: (batches + 1,) int64 where each
    batch starts in `order`; sequence: (batches,) int64, the shuffled batch order. Arrays live in
    shared memory; `plan[i]` is batch i's items, a (count,) int64 view."""

    order: np.ndarray
    bounds: np.ndarray
    sequence: np.ndarray

    def __len__(self) -> int:
        return len(self.sequence)

    def __getitem__(self, index: int) -> np.ndarray:
        batch = self.sequence[index]
        return self.order[self.bounds[batch]:self.bounds[batch + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def plan_batches(sizes, max_tokens: int, max_sample_size: int, seed: int, epoch: int) -> BatchPlan:
    """Length-sorted batches of at most `max_tokens` samples (longest x count), shuffled.

    Ties in length are broken by a seeded permutation; the batch order is shuffled per epoch.
    Items are taken greedily in length order: a batch grows while its longest item times its
    count stays within `max_tokens` (one item at least). Vectorised in numpy (`_batch_starts`).
    """
    rng = np.random.default_rng([seed, epoch])
    capped = np.minimum(np.asarray(sizes, dtype=np.int64), max_sample_size)
    order, ordered = _length_order(capped, rng.permutation(len(capped)))
    starts = _batch_starts(ordered, max_tokens)
    sequence = rng.permutation(len(starts))
    return BatchPlan(shared_copy(order), shared_copy(np.append(starts, len(order))), shared_copy(sequence))


def _length_order(capped: np.ndarray, ties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items sorted by length, ties broken by `ties` ascending; their lengths), as
    np.lexsort((ties, capped)) but with one sort of a combined key where it fits int64."""
    count = len(capped)
    if not count or int(capped.max()) >= np.iinfo(np.int64).max // max(count, 1):
        order = np.lexsort((ties, capped))
        return order, capped[order]
    key = capped * count + ties  # unique: length first, tie second
    key.sort()
    by_tie = np.empty(count, np.int64)
    by_tie[ties] = np.arange(count)
    return by_tie[key % count], key // count


def _batch_starts(ordered: np.ndarray, max_tokens: int) -> np.ndarray:
    """Where each greedy batch starts in `ordered` (ascending lengths): a batch from s takes
    m(s) items, the most with ordered[s + m - 1] * m <= max_tokens (at least one).

    With q(k) the number of lengths <= max_tokens // k, ordered[s + k - 1] * k <= max_tokens
    exactly when s <= r(k) = q(k) - k, and r falls strictly with k: m(s) counts the k with
    r(k) >= s. m never grows with s, so the starts are runs of equal steps, one run per m."""
    count = len(ordered)
    if not count:
        return np.zeros(0, np.int64)
    steps = np.arange(1, min(count, max_tokens // max(int(ordered[0]), 1)) + 2)
    reach = np.searchsorted(ordered, max_tokens // steps, side="right") - steps  # r(k), k = steps
    runs, start = [], 0
    while start < count:
        step = max(1, int(np.searchsorted(-reach, -start, side="right")))
        last = int(reach[step - 1]) if step > 1 else count - 1
        runs.append(np.arange(start, last + 1, step))
        start = int(runs[-1][-1]) + step
    return np.concatenate(runs)


class WorkerBatches:
    """(global index, items) of the batches of `plan` worker `rank` of `world` runs: every
    world-th, truncated so all workers get the same count."""

    def __init__(self, plan: BatchPlan, rank: int, world: int):
        self.plan, self.rank, self.world = plan, rank, world

    def __len__(self) -> int:
        return len(self.plan) // self.world

    def __getitem__(self, position: int) -> tuple[int, np.ndarray]:
        if not 0 <= position < len(self):
            raise IndexError(position)
        index = self.rank + position * self.world
        return index, self.plan[index]

    def __iter__(self):
        return (self[p] for p in range(len(self)))


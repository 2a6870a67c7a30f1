"""Many small DTWs at once: the distance between two feature sequences that ABX compares.

The distance of two sequences is the angular distance of their frames (arccos of the cosine,
divided by pi: 0 for the same direction, 1 for opposite ones), summed along the cheapest
monotone path from the first pair of frames to the last (steps right, down or diagonal, each
frame pair counted once) and divided by the number of frame pairs on that path. The path is
found by backtracking from the end, preferring the diagonal, then the step that keeps the
first sequence's frame: the rule of the ZeroSpeech / Libri-light ABX and of fastabx.

Pairs are computed in batches padded to the batch's longest sequences: the accumulated cost
of a frame pair depends only on pairs before it, so padding changes nothing, and the
anti-diagonals of the cost matrix are filled one at a time for every pair of the batch.
"""
from __future__ import annotations

import math

import numpy as np
import torch

BATCH_ELEMENTS = 1 << 24  # frame-distance entries (pairs x rows x cols) computed at once


def unit_rows(feats: np.ndarray) -> np.ndarray:
    """(frames, dim) -> the same with every frame scaled to length 1 (an all-zero frame stays zero)."""
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return (feats / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def angular_costs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (pairs, rows, dim), b (pairs, cols, dim), unit-length frames -> (pairs, rows, cols) angular
    distances in [0, 1]."""
    return torch.bmm(a, b.transpose(1, 2)).clamp_(-1.0, 1.0).acos_().div_(math.pi)


def dtw_distances(cost: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """cost (pairs, R, C) padded frame distances, rows/cols (pairs,) true lengths (>= 1) ->
    (pairs,) path-length-normalised DTW distances."""
    pairs, height, width = cost.shape
    acc = _accumulated(cost)
    pair = torch.arange(pairs)
    return acc[rows + cols, rows, pair] / _path_lengths(acc, rows - 1, cols - 1)


def _accumulated(cost: torch.Tensor) -> torch.Tensor:
    """Accumulated costs on anti-diagonals: acc[i + j + 2, i + 1, p] is the cheapest sum of frame
    distances along a path from (0, 0) to frame pair (i, j) of pair p (inf outside the matrix).
    Frame pair (i, j)'s predecessors (i - 1, j), (i, j - 1) and (i - 1, j - 1) sit on the two
    anti-diagonals before it, so each anti-diagonal is one vectorised step."""
    pairs, height, width = cost.shape
    diagonals = height + width - 1
    i = torch.arange(height)[None, :]
    j = torch.arange(diagonals)[:, None] - i  # (diagonals, height)
    skewed = cost.permute(1, 2, 0)[i, j.clamp(0, width - 1)]  # (diagonals, height, pairs)
    skewed[(j < 0) | (j >= width)] = math.inf
    acc = torch.full((diagonals + 2, height + 1, pairs), math.inf, dtype=cost.dtype)
    acc[0, 0] = 0.0  # the virtual pair (-1, -1) that (0, 0) continues
    for d in range(diagonals):
        best = torch.minimum(torch.minimum(acc[d + 1, :height], acc[d + 1, 1:]), acc[d, :height])
        acc[d + 2, 1:] = skewed[d] + best
    return acc


def _path_lengths(acc: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Frame pairs on the backtracked path from (i, j) (0-based last frames) to (0, 0)."""
    pair = torch.arange(len(i))
    length = torch.ones(len(i), dtype=acc.dtype)
    i, j = i.clone(), j.clone()
    for _ in range(int(acc.shape[0])):
        inside = (i > 0) & (j > 0)
        d = i + j + 2
        up, left, diag = acc[d - 1, i, pair], acc[d - 1, i + 1, pair], acc[d - 2, i, pair]
        go_diag = (diag <= left) & (diag <= up)
        go_left = ~go_diag & (left <= up)
        i = i - (inside & ~go_left).long()
        j = j - (inside & (go_diag | go_left)).long()
        length += inside.to(acc.dtype)
    return length + i + j  # along the first row or column to (0, 0)


def pair_distances(items: list[np.ndarray], first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """DTW angular distances between items[first[k]] and items[second[k]] for every k.

    items: (frames, dim) float32 sequences with unit-length frames (`unit_rows`).
    Pairs are sorted by length and computed in padded batches; returns (pairs,) float32.
    """
    out = np.zeros(len(first), dtype=np.float32)
    if len(first) == 0:
        return out
    frames = _Frames(items)
    order = np.lexsort((frames.lengths[second], frames.lengths[first]))
    longest = int(max(frames.lengths[first].max(), frames.lengths[second].max()))
    size = max(1, BATCH_ELEMENTS // (longest * longest + 2 * longest * frames.dim))
    for start in range(0, len(order), size):
        batch = order[start:start + size]
        rows, cols = frames.lengths[first[batch]], frames.lengths[second[batch]]
        cost = angular_costs(frames.padded(first[batch]), frames.padded(second[batch]))
        out[batch] = dtw_distances(cost, torch.from_numpy(rows), torch.from_numpy(cols)).numpy()
    return out


class _Frames:
    """Every item's frames in one array, so a padded batch is one gather (a zero frame pads)."""

    def __init__(self, items: list[np.ndarray]):
        self.dim = items[0].shape[1]
        self.lengths = np.array([len(x) for x in items], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.flat = np.concatenate(list(items) + [np.zeros((1, self.dim), np.float32)], dtype=np.float32)

    def padded(self, which: np.ndarray) -> torch.Tensor:
        """(len(which), longest of them, dim) frames of items `which`, zero after each one's end."""
        width = int(self.lengths[which].max())
        offset = np.arange(width)[None, :]
        index = np.where(offset < self.lengths[which][:, None], self.starts[which][:, None] + offset,
                         len(self.flat) - 1)
        return torch.from_numpy(self.flat[index])

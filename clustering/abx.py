"""Triphone ABX error, within and across speaker, as the ZeroSpeech 2021 / fastabx procedure.

A triplet (a, b, x) is an error when DTW(x, a) > DTW(x, b) (half an error on a tie), where a
and x are items (triphones, see abx_items.py) with the same central phone and b has another,
all three with the same previous and next phone. Distances are angular, averaged along the DTW
path (dtw.py), on each row's continuous features.

- Within speaker: a, b and x come from one speaker; a cell is (phone A, phone B, context,
  speaker) with at least two A items, and x runs over A's items, never serving as its own a.
- Across speaker: a and b come from one speaker, x from another; a cell is (phone A, phone B,
  context, speaker of a and b, speaker of x), with at most `max_x_speakers` x speakers per
  (phone A, phone B, context, speaker of a and b).
Subsampling (fastabx's `max_size_group`): at most `max_items` items of each (phone, context,
speaker) group take part (abx_items.subsample), so a cell holds at most that many a, b and x.

A cell's error is the mean over its triplets. The figure averages hierarchically, as fastabx's
`collapse(levels=[("next-phone", "prev-phone"), "speaker"])`: over the cells of each
(phone A, phone B, speaker) (contexts, and x speakers across speaker), then over speakers for
each (phone A, phone B), then over those ordered phone pairs.

For the bootstrap, each triplet is weighted by the product of the resampling counts of the
utterances its three items come from; a cell whose triplets all weigh zero drops out, as a
cell with no triplet does.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from .abx_items import Item, frame_span
from .dtw import pair_distances, unit_rows
from .threads import torch_threads

CHUNK_ELEMENTS = 1 << 24  # (resamples x cells x items^2) entries weighed at once


@dataclass
class AbxCells:
    """One ABX condition's cells: items (indices into the item list, -1 for none) of A, B and X."""

    a: np.ndarray  # (cells, M) int64
    b: np.ndarray  # (cells, M)
    x: np.ndarray  # (cells, M)
    symmetric: bool  # X is A's own set (within speaker): an item is never its own a
    by_speaker: np.ndarray  # (cells,) group id of (phone A, phone B, speaker of a and b)
    by_pair: np.ndarray  # (speaker groups,) group id of (phone A, phone B)

    def __len__(self) -> int:
        return len(self.a)


def within_cells(items: list[Item], max_items: int) -> AbxCells:
    """Cells of the within-speaker condition over `items` (already subsampled)."""
    groups: dict[tuple, dict[str, list[int]]] = {}
    for k, it in enumerate(items):
        groups.setdefault((it.prev, it.next, it.speaker), {}).setdefault(it.phone, []).append(k)
    rows = []
    for (_, _, speaker), phones in groups.items():
        for phone_a, a in phones.items():
            if len(a) < 2:
                continue
            rows += [((phone_a, phone_b, speaker), a, b, a) for phone_b, b in phones.items() if phone_b != phone_a]
    return _cells(rows, max_items, symmetric=True)


def across_cells(items: list[Item], max_items: int, max_x_speakers: int, seed: int) -> AbxCells:
    """Cells of the across-speaker condition over `items` (already subsampled)."""
    groups: dict[tuple, dict[str, dict[str, list[int]]]] = {}
    for k, it in enumerate(items):
        groups.setdefault((it.prev, it.next), {}).setdefault(it.speaker, {}).setdefault(it.phone, []).append(k)
    rows = []
    for context, speakers in groups.items():
        for speaker, phones in speakers.items():
            for phone_a, a in phones.items():
                others = sorted((s for s in speakers if s != speaker and phone_a in speakers[s]),
                                key=lambda s: (zlib.crc32(f"{seed}:{phone_a}:{context}:{speaker}:{s}".encode()), s))
                for phone_b, b in phones.items():
                    if phone_b != phone_a:
                        rows += [((phone_a, phone_b, speaker), a, b, speakers[s][phone_a])
                                 for s in others[:max_x_speakers]]
    return _cells(rows, max_items, symmetric=False)


def _cells(rows: list[tuple[tuple, list[int], list[int], list[int]]], width: int, symmetric: bool) -> AbxCells:
    """(speaker group key, a, b, x) per cell -> padded index arrays and group ids."""
    def padded(column: int) -> np.ndarray:
        out = np.full((len(rows), width), -1, dtype=np.int64)
        for c, row in enumerate(rows):
            out[c, :len(row[column])] = row[column]
        return out

    speaker_groups: dict[tuple, int] = {}
    by_speaker = np.array([speaker_groups.setdefault(row[0], len(speaker_groups)) for row in rows], dtype=np.int64)
    pair_groups: dict[tuple, int] = {}
    by_pair = np.array([pair_groups.setdefault(key[:2], len(pair_groups)) for key in speaker_groups], dtype=np.int64)
    return AbxCells(padded(1), padded(2), padded(3), symmetric, by_speaker, by_pair)


class AbxScore:
    """ABX error of one row's features in one condition, with the cells' triplet outcomes kept
    for the bootstrap."""

    def __init__(self, cells: AbxCells, errors: np.ndarray, item_utterances: np.ndarray):
        self.cells = cells
        self.errors = errors  # (cells, M x, M a, M b) uint8: 2 per error, 1 per tie, 0 otherwise
        if cells.symmetric:  # an item is never its own a: its triplets count for nothing
            self.errors[:, np.arange(errors.shape[1]), np.arange(errors.shape[1])] = 0
        self.utterances = item_utterances  # (items,) utterance index of each item
        self.error = float(self.resampled(np.ones((1, int(item_utterances.max(initial=0)) + 1)))[0])

    @property
    def contributors(self) -> int:
        """Utterances owning an item of some cell: what the bootstrap resamples."""
        slots = np.concatenate([self.cells.a, self.cells.b, self.cells.x], axis=1)
        return len(np.unique(self.utterances[slots[slots >= 0]]))

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """(resamples, utterances) utterance weights -> (resamples,) ABX errors (NaN: no cell left).
        Sums run in float32, exact for whole-number weights (products and sums stay below 2^24)."""
        cells, width = self.cells, self.cells.a.shape[1]
        errors = torch.from_numpy(self.errors).float().reshape(len(cells), width * width, width)
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, len(cells) * width * width))
        with torch_threads(1):
            out = [self._chunk(torch.from_numpy(np.asarray(weights[s:s + per_chunk], dtype=np.float32)), errors)
                   for s in range(0, len(weights), per_chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    def _chunk(self, weights: torch.Tensor, errors: torch.Tensor) -> np.ndarray:
        """weights (n, utterances), errors (cells, M x * M a, M b) -> (n,) collapsed errors."""
        cells, width = self.cells, self.cells.a.shape[1]
        wx, wa, wb = (self._item_weights(weights.T.contiguous(), index) for index in (cells.x, cells.a, cells.b))
        by_b = torch.bmm(errors, wb).view(len(cells), width, width, -1)  # (cells, x, a, n)
        wrong = ((by_b * wa[:, None]).sum(2) * wx).sum(1) / 2  # (cells, n)
        pairs = wx.sum(1) * wa.sum(1) - ((wx * wx).sum(1) if cells.symmetric else 0)
        wrong, total = wrong.double(), (pairs * wb.sum(1)).double()  # whole numbers, exact in float32
        present = total > 0
        return collapse(torch.where(present, wrong / total.clamp(min=1e-30), 0.0).T, present.T,
                        torch.from_numpy(cells.by_speaker), torch.from_numpy(cells.by_pair)).numpy()

    def _item_weights(self, weights: torch.Tensor, index: np.ndarray) -> torch.Tensor:
        """(utterances, n) -> (cells, M, n): each slot's utterance weight, 0 for an empty slot."""
        utterance = torch.from_numpy(np.where(index >= 0, self.utterances[np.maximum(index, 0)], 0))
        return weights[utterance] * torch.from_numpy(index >= 0)[:, :, None]


def collapse(errors: torch.Tensor, present: torch.Tensor, by_speaker: torch.Tensor,
             by_pair: torch.Tensor) -> torch.Tensor:
    """(n, cells) cell errors and presence -> (n,) means over cells per speaker group, then
    over speaker groups per phone pair, then over phone pairs (NaN when nothing is present)."""
    speaker_mean, speaker_present = _group_mean(errors, present, by_speaker, len(by_pair))
    pair_mean, pair_present = _group_mean(speaker_mean, speaker_present, by_pair, int(by_pair.max()) + 1 if len(by_pair) else 0)
    return (pair_mean * pair_present).sum(1) / pair_present.sum(1)


def _group_mean(values: torch.Tensor, present: torch.Tensor, group: torch.Tensor, groups: int):
    sums = torch.zeros(values.shape[0], groups, dtype=values.dtype).index_add_(1, group, values * present)
    counts = torch.zeros(values.shape[0], groups, dtype=values.dtype).index_add_(1, group, present.to(values.dtype))
    return torch.where(counts > 0, sums / counts.clamp(min=1), 0.0), counts > 0


def item_features(report: list[np.ndarray], items: list[Item], frame_rate: float) -> list[np.ndarray]:
    """Each item's frames of its utterance's features at `frame_rate`, frames scaled to unit length."""
    out = []
    for it in items:
        feats = report[it.utterance]
        first, stop = frame_span(it, frame_rate)
        stop = min(stop, len(feats))
        first = min(first, stop - 1)
        out.append(unit_rows(feats[first:stop]))
    return out


def abx_score(cells: AbxCells, features: list[np.ndarray], item_utterances: np.ndarray) -> AbxScore:
    """The ABX error of `features` (one (frames, dim) array per item, unit-length frames) on `cells`."""
    first, second, lookup = _needed_pairs(cells, len(features))
    with torch_threads(1):
        distances = pair_distances(features, first, second)

    def dist(u: np.ndarray, v: np.ndarray) -> np.ndarray:  # (cells, M, M) distances, inf where a slot is empty
        code = np.minimum(u, v) * len(features) + np.maximum(u, v)
        found = distances[np.clip(np.searchsorted(lookup, code), 0, len(lookup) - 1)] if len(lookup) else code
        return np.where((u >= 0) & (v >= 0), found, np.inf)

    x = cells.x[:, :, None]
    to_a, to_b = dist(x, cells.a[:, None, :]), dist(x, cells.b[:, None, :])  # (cells, x, a), (cells, x, b)
    errors = (to_a[:, :, :, None] > to_b[:, :, None, :]).astype(np.uint8) * 2 \
        + (to_a[:, :, :, None] == to_b[:, :, None, :]).astype(np.uint8)
    return AbxScore(cells, errors, item_utterances)


def _needed_pairs(cells: AbxCells, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, sorted codes) of every item pair some cell compares, each pair once."""
    x = cells.x[:, :, None]
    codes = []
    for other in (cells.a[:, None, :], cells.b[:, None, :]):
        u, v = np.broadcast_arrays(x, other)
        keep = (u >= 0) & (v >= 0) & (u != v)
        codes.append(np.minimum(u, v)[keep] * count + np.maximum(u, v)[keep])
    unique = np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)
    return unique // max(count, 1), unique % max(count, 1), unique

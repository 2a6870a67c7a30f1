"""Labelled audio for pretraining: utterances, length-bucketed batches, crop/pad collate.

Batches are planned per epoch from the seed alone (batch_plan.py), so any worker can tell which
utterances form global batch i of epoch e, and every random choice made for that
batch (crop starts, masks, dropout) is seeded from (seed, epoch, i). That makes
a resumed run, or 2 workers instead of 1 with accumulation 2, see the same data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clustering.audio import (BASE_CONV, SAMPLE_RATE, AudioError, ConvSpec, label_indices, load_listed_audio,
                              num_model_frames)
from clustering.label_arrays import open_checked_labels
from clustering.manifest import check_audio_present
from clustering.manifest_arrays import open_manifest

from .batch_plan import WorkerBatches, plan_batches, shared_array
from .loss import IGNORE


@dataclass
class Batch:
    wav: torch.Tensor  # (B, S) float32
    lengths: torch.Tensor  # (B,) valid samples
    targets: list[torch.Tensor]  # per label set, (B, T) long, IGNORE where unlabelled
    seed: int  # seeds masks and dropout for this batch

    def pin_memory(self) -> "Batch":
        """A copy in page-locked memory (DataLoader's pin_memory calls this), so the copy to
        the GPU can be `non_blocking`."""
        return Batch(self.wav.pin_memory(), self.lengths.pin_memory(), [t.pin_memory() for t in self.targets],
                     self.seed)

    @property
    def padded(self) -> bool:
        """Whether any item is shorter than the batch (decided here, on the host)."""
        return bool((self.lengths < self.wav.shape[1]).any())


class LabelledAudio:
    """Utterances of one split with their label sets, short ones dropped.

    `manifest_path` is SPLIT.tsv; each label directory holds SPLIT.km and
    labels.json (number of units, label rate), checked against the manifest.
    Both are read as memory-mapped arrays (SPLIT.tsv.arrays, SPLIT.km.arrays; built when
    missing or stale), so no Python object is made per utterance and forked loader workers
    share the pages instead of copying them.
    """

    def __init__(self, manifest_path: str | Path, label_dirs: list[str | Path], min_samples: int):
        manifest = open_manifest(manifest_path)
        check_audio_present(manifest, manifest_path)
        split = Path(manifest_path).stem
        self.manifest = manifest
        self.infos, self.labels = [], []
        for directory in label_dirs:
            info, labels = open_checked_labels(directory, split, manifest)
            self.infos.append(info)
            self.labels.append(labels)
        self.min_samples = min_samples
        self.keep = _kept(manifest.sizes, min_samples)  # None: every utterance is kept
        self.dropped = 0 if self.keep is None else len(manifest) - len(self.keep)
        if self.keep is not None and not len(self.keep):
            raise ValueError(f"{manifest_path}: every utterance is shorter than min_sample_size="
                             f"{min_samples} samples; lower it or use longer audio")

    @property
    def num_units(self) -> list[int]:
        return [info.num_units for info in self.infos]

    def __getstate__(self) -> dict:
        """Pickled without the kept indices (a loader worker started by spawn finds them again)."""
        return {**self.__dict__, "keep": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.keep = _kept(self.manifest.sizes, self.min_samples)

    @property
    def sizes(self) -> np.ndarray:
        """(len(self),) int64 samples of each kept utterance."""
        return self.manifest.sizes if self.keep is None else self.manifest.sizes[self.keep]

    def size(self, item: int) -> int:
        return int(self.manifest.sizes[self.line(item)])

    def line(self, item: int) -> int:
        """The manifest index of kept utterance `item`."""
        return int(item if self.keep is None else self.keep[item])

    def __len__(self) -> int:
        return len(self.manifest) if self.keep is None else len(self.keep)

    def load(self, item: int) -> tuple[np.ndarray, list[np.ndarray]]:
        line = self.line(item)
        return load_listed_audio(self.manifest.audio_path(line), self.manifest.line_number(line)), \
            [labels[line] for labels in self.labels]


def _kept(sizes: np.ndarray, min_samples: int, block: int = 2**20) -> np.ndarray | None:
    """Indices of the utterances of at least `min_samples` (in shared memory), or None for all."""
    short = sum(int((sizes[b:b + block] < min_samples).sum()) for b in range(0, len(sizes), block))
    if not short:
        return None
    kept = shared_array(len(sizes) - short, np.int64)
    filled = 0
    for begin in range(0, len(sizes), block):
        found = begin + np.flatnonzero(sizes[begin:begin + block] >= min_samples)
        kept[filled:filled + len(found)] = found
        filled += len(found)
    return kept


def batch_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.default_rng([seed, epoch, index]).integers(2**31))


def collate(items: list[tuple[np.ndarray, list[np.ndarray]]], label_rates: list[float], crop: bool,
            max_sample_size: int, seed: int, spec: ConvSpec = BASE_CONV, crop_multiple: int = 0) -> Batch:
    """Crop every item to the shortest (crop=True, random start) or pad to the longest,
    at most `max_sample_size`; labels follow the crop and are aligned to the frames of a
    model whose CNN is `spec` ((kernel, stride) per layer). `crop_multiple` > 0 rounds that
    length to a grid (see `batch_length`) so batch shapes repeat."""
    rng = np.random.default_rng(seed)
    target = batch_length([len(w) for w, _ in items], crop, max_sample_size, crop_multiple)
    frames = num_model_frames(target, spec)
    wav = torch.zeros(len(items), target)
    lengths = torch.zeros(len(items), dtype=torch.long)
    targets = [torch.full((len(items), frames), IGNORE, dtype=torch.long) for _ in label_rates]
    for b, (audio, label_sets) in enumerate(items):
        start = int(rng.integers(0, len(audio) - target + 1)) if len(audio) > target else 0
        piece = audio[start:start + target]
        wav[b, :len(piece)] = torch.from_numpy(piece)
        lengths[b] = len(piece)
        valid = num_model_frames(len(piece), spec)
        for k, (rate, labels) in enumerate(zip(label_rates, label_sets)):
            offset = int(round(start * rate / SAMPLE_RATE))
            index = offset + label_indices(valid, rate)
            usable = index < len(labels)
            row = np.full(valid, IGNORE, dtype=np.int64)
            row[usable] = labels[index[usable]]
            targets[k][b, :valid] = torch.from_numpy(row)
    return Batch(wav, lengths, targets, seed)


def batch_length(sizes: list[int], crop: bool, max_sample_size: int, crop_multiple: int = 0) -> int:
    """Samples per item of a batch of items `sizes` long: the shortest (crop) or the longest
    (pad), at most `max_sample_size`. With `crop_multiple` > 0 a crop is rounded down to a
    multiple of it (kept as is when shorter than one) and a pad rounded up, so that compiled
    graphs, cuDNN plans and cuBLAS heuristics made for one length serve many batches.
    0 is fairseq's exact crop to the shortest."""
    target = min(min(sizes) if crop else max(sizes), max_sample_size)
    if crop_multiple <= 0:
        return target
    if crop:
        return target - target % crop_multiple if target >= crop_multiple else target
    return -(-target // crop_multiple) * crop_multiple


class BatchLoader(torch.utils.data.Dataset):
    """Global batches `indices` of one epoch as a map-style dataset (one item = one batch),
    so a DataLoader's workers load and collate them in parallel."""

    def __init__(self, data: LabelledAudio, batches: list[tuple[int, list[int]]], epoch: int,
                 crop: bool, max_sample_size: int, seed: int, spec: ConvSpec = BASE_CONV, crop_multiple: int = 0):
        self.data, self.batches, self.epoch = data, batches, epoch
        self.crop, self.max_sample_size, self.seed, self.spec = crop, max_sample_size, seed, spec
        self.crop_multiple = crop_multiple
        self.rates = [info.label_rate for info in data.infos]

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, position: int) -> Batch:
        index, items = self.batches[position]
        return self.load(items, batch_seed(self.seed, self.epoch, index))

    def load(self, items: list[int], seed: int) -> Batch:
        """The batch of utterances `items`, cropped and labelled with random choices from `seed`."""
        return collate([self.data.load(i) for i in items], self.rates, self.crop, self.max_sample_size, seed,
                       self.spec, self.crop_multiple)


class PlannedBatches(torch.utils.data.Dataset):
    """One worker's batches of every epoch as one dataset, so a single DataLoader (and its worker
    processes) serves a whole run. Each epoch is planned from the seed when first asked for
    (`plan_batches`, then `WorkerBatches`), in the process that asks: the sampler's, so the
    loader's worker processes get each batch's items with its key, (epoch, index, items), and
    never plan."""

    def __init__(self, loader: BatchLoader, max_tokens: int, rank: int, world: int):
        self.loader, self.max_tokens, self.rank, self.world = loader, max_tokens, rank, world
        self._plans: dict[int, WorkerBatches] = {}  # the two latest epochs asked for

    def __getstate__(self) -> dict:
        """Pickled without plans: a loader worker is handed each batch's items and never plans."""
        return {**self.__dict__, "_plans": {}}

    def epoch(self, epoch: int) -> "WorkerBatches":
        """(global index, items) of this worker's batches in `epoch`."""
        if epoch not in self._plans:
            data, loader = self.loader.data, self.loader
            plan = plan_batches(data.sizes, self.max_tokens, loader.max_sample_size, loader.seed, epoch)
            self._plans = {e: p for e, p in self._plans.items() if e >= epoch - 1}
            self._plans[epoch] = WorkerBatches(plan, self.rank, self.world)
        return self._plans[epoch]

    def key(self, epoch: int, position: int) -> tuple[int, int, np.ndarray]:
        """What the loader asks for to get this worker's batch `position` of `epoch`: (epoch, index, items)."""
        index, items = self.epoch(epoch)[position]
        return epoch, index, items

    def __getitem__(self, key: tuple[int, int, np.ndarray]) -> Batch | AudioError:
        """The batch; an unreadable audio file comes back as its error (naming the file and its manifest
        line), for the consumer to raise: raised in a loader worker, it would reach the user buried
        in the worker's traceback."""
        epoch, index, items = key
        return error_returned(self.loader.load, items, batch_seed(self.loader.seed, epoch, index))


def error_returned(load, *args) -> Batch | AudioError:
    """`load(*args)`, or the AudioError it raised."""
    try:
        return load(*args)
    except AudioError as error:
        return error

"""Assign k-means units to every utterance of a split, from dumped features or from audio.

Streaming: one utterance's features are in memory at a time (plus the mapped
shard pages the OS chooses to keep), whatever the size of the feature set.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from .features import BatchedFeatures, FeatureFn, shard_features
from .kmeans import KMeansTeacher, file_sha256
from .label_arrays import check_label_arrays, write_label_arrays
from .labels import LabelError, LabelInfo, write_dictionary
from .heap import reuse_freed_memory
from .manifest import Manifest


def assign_all(feature_rows: Iterable[np.ndarray], teacher: KMeansTeacher, total: int,
               desc: str = "labels") -> list[np.ndarray]:
    """Units for each (frames, dim) array of `feature_rows`."""
    return [teacher.assign(np.asarray(f)) for f in tqdm(feature_rows, total=total, desc=desc,
                                                         unit="utt", mininterval=2)]


def label_audio(manifest: Manifest, feature_fn: FeatureFn | BatchedFeatures, teacher: KMeansTeacher,
                rank: int = 0, nshard: int = 1, jobs: int = 1) -> list[np.ndarray]:
    """Units for this shard's utterances, computing features on the fly (nothing dumped).

    A BatchedFeatures (a model's layers) computes in its own batches and assigns units where it
    runs (the GPU), so only labels come back; a plain feature function runs utterance by
    utterance in `jobs` processes. An utterance the feature function fails on raises
    FeatureError naming its file and manifest line.
    """
    reuse_freed_memory()
    lines = manifest.shard(rank, nshard)
    units = shard_features(manifest, feature_fn, lines, jobs, reduce=teacher.nearest)
    return list(tqdm(units, total=len(lines), desc=f"labels {rank}/{nshard}", unit="utt", mininterval=2))


def shard_label_path(out_dir: str | Path, split: str, rank: int, nshard: int) -> Path:
    return Path(out_dir) / f"{split}_{rank}_{nshard}.km"


def merge_label_shards(out_dir: str | Path, split: str, nshard: int, manifest: Manifest) -> Path:
    """Concatenate `{split}_{r}_{nshard}.km` in rank order into `{split}.km`, checking each
    shard holds exactly the lines its manifest range needs. Streams bytes: no row is parsed."""
    shards = []
    for rank in range(nshard):
        path = shard_label_path(out_dir, split, rank, nshard)
        if not path.exists():
            raise LabelError(f"{path}: shard missing; run `hubert labels --rank {rank} --nshard {nshard}`")
        lines, expected = count_lines(path), len(manifest.shard(rank, nshard))
        if lines != expected:
            raise LabelError(f"{path}: {lines} lines, but shard {rank}/{nshard} of the "
                             f"manifest has {expected}; rerun that shard")
        shards.append(path)
    target = Path(out_dir) / f"{split}.km"
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as out:
        for path in shards:
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out)
                if f.tell() and _last_byte(f) != b"\n":
                    out.write(b"\n")
    os.replace(tmp, target)
    return target


def count_lines(path: str | Path, block: int = 2**24) -> int:
    """Lines of the text file `path` (a last line without a newline counts), read in blocks."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while data := f.read(block):
            count += data.count(b"\n")
            last = data[-1:]
    return count + (last != b"\n")


def _last_byte(f) -> bytes:
    f.seek(-1, os.SEEK_END)
    return f.read(1)


def finish_label_dir(out_dir: str | Path, teacher_path: str | Path, teacher: KMeansTeacher,
                     label_rate: float, features: str, manifests: dict[str, Manifest],
                     frames: tuple[tuple[int, int], ...] = ()) -> LabelInfo:
    """Write every `{split}.km` as arrays (SPLIT.km.arrays, see label_arrays) and check them against
    its manifest, then write dict.km.txt and labels.json (recording `frames`, the (kernel, stride)
    framing the labels were computed with)."""
    out_dir = Path(out_dir)
    lines = {}
    for split, manifest in manifests.items():
        labels = write_label_arrays(out_dir / f"{split}.km", teacher.num_units)
        check_label_arrays(labels, manifest, label_rate, teacher.num_units)
        lines[split] = len(manifest)
    write_dictionary(out_dir, teacher.num_units)
    info = LabelInfo(teacher.num_units, label_rate, features, str(Path(teacher_path).resolve()),
                     file_sha256(teacher_path), lines, [list(layer) for layer in frames])
    info.save(out_dir)
    return info

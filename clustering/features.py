"""Teacher features: the reference MFCC recipe, and sharded, resumable feature dumps.

A dump of split `train` as shard `rank` of `nshard` is two files, as fairseq
writes them: `train_{rank}_{nshard}.npy` (all frames, (frames, dim) float32)
and `train_{rank}_{nshard}.len` (frames per utterance, one per line).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE, load_audio
from .manifest import Manifest
from .shards import NpyRowWriter

FeatureFn = Callable[[np.ndarray], np.ndarray]  # wav (samples,) float32 -> (frames, dim) float32
MFCC_DIM = 39


def mfcc_features(wav: np.ndarray) -> np.ndarray:
    """Kaldi MFCC (13, no energy) + delta + delta-delta, as fairseq's dump_mfcc_feature.

    wav: (samples,) float at 16 kHz. Returns (frames, 39) float32 at 100 Hz.
    """
    import torch
    import torchaudio

    torch.set_num_threads(1)  # one utterance is too small to share; parallelism is per process
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).view(1, -1)
    with torch.inference_mode():
        mfcc = torchaudio.compliance.kaldi.mfcc(waveform=x, sample_frequency=SAMPLE_RATE,
                                                use_energy=False).transpose(0, 1)  # (13, frames)
        delta = torchaudio.functional.compute_deltas(mfcc)
        delta2 = torchaudio.functional.compute_deltas(delta)
        return torch.cat([mfcc, delta, delta2], dim=0).transpose(0, 1).contiguous().numpy()


def shard_paths(out_dir: str | Path, split: str, rank: int, nshard: int) -> tuple[Path, Path]:
    stem = Path(out_dir) / f"{split}_{rank}_{nshard}"
    return stem.with_suffix(".npy"), stem.with_suffix(".len")


class _FileFeatures:
    """Picklable `path -> features` for worker processes."""

    def __init__(self, feature_fn: FeatureFn):
        self.feature_fn = feature_fn

    def __call__(self, path: Path) -> np.ndarray:
        return np.asarray(self.feature_fn(load_audio(path)), dtype=np.float32)


def dump_features(manifest: Manifest, feature_fn: FeatureFn, out_dir: str | Path, split: str,
                  rank: int = 0, nshard: int = 1, jobs: int = 1) -> tuple[Path, Path]:
    """Compute `feature_fn` for this shard's utterances and write the .npy/.len pair.

    Output goes to temporary names and is renamed only when complete, so a job
    killed at any point leaves no partial shard and its rerun writes the same
    bytes. A shard whose two files already exist is left as it is. `jobs` > 1
    decodes and computes in that many processes (order is kept); use 1 for
    feature functions that hold a model.
    """
    npy_path, len_path = shard_paths(out_dir, split, rank, nshard)
    if npy_path.exists() and len_path.exists():
        return npy_path, len_path
    npy_path.parent.mkdir(parents=True, exist_ok=True)
    lines = manifest.shard(rank, nshard)
    paths = [manifest.audio_path(i) for i in lines]
    compute = _FileFeatures(feature_fn)
    tmp_npy, tmp_len = (p.with_name(p.name + ".tmp") for p in (npy_path, len_path))
    pool = ProcessPoolExecutor(jobs) if jobs > 1 else None
    try:
        results = pool.map(compute, paths, chunksize=4) if pool else map(compute, paths)
        with NpyRowWriter(tmp_npy) as writer:
            lengths = []
            for feats in tqdm(results, total=len(paths), desc=f"features {split} {rank}/{nshard}",
                              unit="utt", mininterval=2):
                writer.append(feats)
                lengths.append(len(feats))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    tmp_len.write_text("".join(f"{n}\n" for n in lengths))
    os.replace(tmp_len, len_path)
    os.replace(tmp_npy, npy_path)  # the .npy appears last: its presence means the shard is whole
    return npy_path, len_path

"""Benchmark data: the built-in corpus (made once under benchmarks/out/) and its MFCC frames; WAV
files written without soundfile; the folder a GPU machine gets carried."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
# What a GPU machine with no git and no network is given (benchmarks/prepare_gpu_kit.sh makes it):
# wheels/ (the packages its image lacks) and old-REV/ (the old tree bench_train.py compares with).
GPU_KIT = OUT / "gpu-kit"


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """(samples,) float in [-1, 1] -> a 16-bit PCM mono WAV file, with the standard library only
    (a bare GPU image lacks soundfile when the corpus is made)."""
    pcm = np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def corpus(hours: float) -> Path:
    """A built-in corpus of `hours`, synthesised on first use."""
    from clustering.synthetic.corpus import make_corpus

    folder = OUT / f"corpus-{hours:g}h"
    if not (folder / "summary.json").exists():
        make_corpus(folder, hours, ("en", "de", "fr", "es", "it"), seed=0, valid_percent=0.0)
    return folder


def mfcc_frames(hours: float) -> np.ndarray:
    """All MFCC frames of a `hours` corpus, (frames, 39) float32."""
    from clustering.features import dump_features, mfcc_features
    from clustering.manifest import read_manifest
    from clustering.feature_shards import FeatureShards

    folder = corpus(hours)
    dump_features(read_manifest(folder / "train.tsv"), mfcc_features, folder / "mfcc", "train", jobs=2)
    return FeatureShards(folder / "mfcc", "train").sample(1.0)


def layer_like_frames(frames: int, dim: int = 768, seed: int = 0) -> np.ndarray:
    """768-dim stand-ins for HuBERT layer features: 20-frame MFCC context windows (780 dims)
    through a fixed random projection and tanh, so they keep speech's cluster structure."""
    mfcc = mfcc_frames(2.0)
    rng = np.random.default_rng(seed)
    width = 20
    starts = rng.integers(0, len(mfcc) - width, frames)
    windows = np.stack([mfcc[s:s + width].ravel() for s in starts]).astype(np.float32)
    windows = (windows - windows.mean(0)) / (windows.std(0) + 1e-5)
    projection = rng.standard_normal((windows.shape[1], dim)).astype(np.float32) / np.sqrt(windows.shape[1])
    return np.tanh(windows @ projection).astype(np.float32)

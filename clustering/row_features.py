"""A row's features, computed once: every fit (train) and report utterance, kept in memory.

k-means, labels, ABX and the phone probe of a row all read these arrays, so no utterance goes
through a model twice for one row. Memory: frames x dim x 4 bytes, e.g. 600 s of train audio
at 50 Hz x 768 dims = 92 MB, per layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from .audio import SAMPLE_RATE, load_audio
from .features import FeatureFn, shard_features
from .manifest import Manifest

LayerFn = Callable[[np.ndarray, list[int]], dict[int, np.ndarray]]  # wav, layers -> {layer: (frames, dim)}


@dataclass
class RowFeatures:
    name: str  # e.g. "MFCC", "iteration-1 model"
    frame_rate: float  # Hz of the features (MFCC 100, model layers 50)
    fit: list[np.ndarray]  # (frames, dim) float32 per fit utterance
    report: dict[str, list[np.ndarray]]  # split -> (frames, dim) float32 per report utterance


def fit_utterances(manifest: Manifest, seconds: float, seed: int) -> Manifest:
    """Whole utterances of `manifest` drawn with `seed` until they add up to `seconds` of audio
    (all of them when there is less), in manifest order."""
    order = np.random.default_rng(seed).permutation(len(manifest))
    total = np.cumsum(np.array(manifest.sizes, dtype=np.int64)[order])
    count = int(np.searchsorted(total, seconds * SAMPLE_RATE)) + 1
    return manifest.subset(np.sort(order[:count]))


def row_features(name: str, feature_fn: FeatureFn, frame_rate: float, fit: Manifest,
                 reports: dict[str, Manifest]) -> RowFeatures:
    """`feature_fn` (a plain function or a batched one with `stream`) of every fit and report utterance."""
    def compute(manifest: Manifest, what: str) -> list[np.ndarray]:
        return list(tqdm(shard_features(manifest, feature_fn, range(len(manifest))), total=len(manifest),
                         desc=f"{name}: {what} features", unit="utt", mininterval=2))

    return RowFeatures(name, frame_rate, compute(fit, "fit"), {split: compute(m, split) for split, m in reports.items()})


def layer_rows(name: str, layer_fn: LayerFn, layers: list[int], frame_rate: float, fit: Manifest,
               reports: dict[str, Manifest]) -> dict[int, RowFeatures]:
    """One row per layer from one pass of `layer_fn` over every fit and report utterance."""
    rows = {layer: RowFeatures(f"{name} layer {layer}", frame_rate, [], {split: [] for split in reports})
            for layer in layers}
    for what, manifest in [("fit", fit)] + list(reports.items()):
        for i in tqdm(range(len(manifest)), desc=f"{name}: {what} features", unit="utt", mininterval=2):
            for layer, feats in layer_fn(load_audio(manifest.audio_path(i)), layers).items():
                feats = np.asarray(feats, dtype=np.float32)
                (rows[layer].fit if what == "fit" else rows[layer].report[what]).append(feats)
    return rows

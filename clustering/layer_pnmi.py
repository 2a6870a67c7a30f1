"""PNMI per layer of an encoder (the paper's Figure 2): k-means on each layer, scored against phones.

Each layer's k-means is fitted on utterances of one split (a frame sample of them;
no alignments needed) and scored on the aligned utterances of another, the way a
teacher is fitted on train and judged on valid: fitting and scoring on the same
frames would flatter every layer against a teacher judged on held-out audio.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm import tqdm

from .audio import load_audio
from .kmeans import KMeansTeacher, fit_kmeans
from .manifest import Manifest
from .quality import joint_counts, pair_frames, purity_pnmi

LayerFn = Callable[[np.ndarray, list[int]], dict[int, np.ndarray]]  # wav, layers -> {layer: (frames, dim)}
FRAMES_PER_UNIT = 100  # frames per layer the k-means is fitted on (a sample across the fit utterances)


def pnmi_per_layer(fit: Manifest, score: Manifest, alignments: dict[str, list[str]], layer_fn: LayerFn,
               layers: list[int], num_units: int = 100, max_utterances: int = 200, label_rate: float = 50.0,
               seed: int = 0) -> dict[int, float]:
    """{layer: PNMI}: per layer, k-means with `num_units` on up to `max_utterances` of `fit`,
    PNMI on up to `max_utterances` aligned utterances of `score`."""
    aligned = [i for i in range(len(score)) if score.utterance_id(i) in alignments]
    if not aligned:
        raise ValueError("layer scan: no utterance of the scored manifest has an alignment")
    rng = np.random.default_rng(seed)
    teachers = fit_layer_teachers(fit.subset(_pick(len(fit), max_utterances, rng)), layer_fn, layers,
                                  num_units, rng, seed)
    scored = score.subset(np.array(aligned)[_pick(len(aligned), max_utterances, rng)])
    rows = {layer: [] for layer in layers}
    for i in tqdm(range(len(scored)), desc="layer scan: score", unit="utt", mininterval=2):
        for layer, feats in layer_fn(load_audio(scored.audio_path(i)), layers).items():
            rows[layer].append(teachers[layer].assign(feats))
    scores = {}
    for layer in layers:
        paired = pair_frames(rows[layer], label_rate, scored, alignments)
        counts = joint_counts(paired.phones, paired.units, len(paired.phone_names), teachers[layer].num_units)
        scores[layer] = purity_pnmi(counts)["pnmi"]
    return scores


def fit_layer_teachers(manifest: Manifest, layer_fn: LayerFn, layers: list[int], num_units: int,
                       rng: np.random.Generator, seed: int = 0) -> dict[int, KMeansTeacher]:
    """One k-means per layer on about FRAMES_PER_UNIT * num_units frames drawn across `manifest`."""
    per_utterance = -(-FRAMES_PER_UNIT * num_units // max(1, len(manifest)))
    sample = {layer: [] for layer in layers}
    for i in tqdm(range(len(manifest)), desc="layer scan: fit", unit="utt", mininterval=2):
        outputs = layer_fn(load_audio(manifest.audio_path(i)), layers)
        frames = len(next(iter(outputs.values())))
        keep = np.sort(rng.permutation(frames)[:per_utterance])
        for layer, feats in outputs.items():
            sample[layer].append(feats[keep])
    teachers = {}
    for layer in layers:
        feats = np.concatenate(sample[layer])
        teachers[layer] = fit_kmeans(feats, min(num_units, len(feats)), seed=seed, features=f"layer{layer}")
    return teachers


def _pick(count: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(count)[:limit])

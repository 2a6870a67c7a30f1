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


def pnmi_per_layer(fit: Manifest, scored: dict[str, Manifest], alignments: dict[str, list[str]],
                   layer_fn: LayerFn, layers: list[int], num_units: int = 100, max_utterances: int = 200,
                   label_rate: float = 50.0, seed: int = 0) -> dict[str, dict[int, float]]:
    """{set name: {layer: PNMI}}: per layer, one k-means with `num_units` on up to `max_utterances`
    of `fit`, scored on up to `max_utterances` aligned utterances of each manifest in `scored`
    (e.g. {"valid": ..., "test": ...}: a layer chosen on one set, reported on the other)."""
    rng = np.random.default_rng(seed)
    teachers = fit_layer_teachers(fit.subset(_pick(len(fit), max_utterances, rng)), layer_fn, layers,
                                  num_units, rng, seed)
    return {name: _score(manifest, name, alignments, layer_fn, teachers, max_utterances, label_rate, rng)
            for name, manifest in scored.items()}


def _score(manifest: Manifest, name: str, alignments: dict[str, list[str]], layer_fn: LayerFn,
           teachers: dict[int, KMeansTeacher], max_utterances: int, label_rate: float,
           rng: np.random.Generator) -> dict[int, float]:
    """{layer: PNMI} of each layer's teacher on up to `max_utterances` aligned utterances of `manifest`."""
    aligned = [i for i in range(len(manifest)) if manifest.utterance_id(i) in alignments]
    if not aligned:
        raise ValueError(f"layer scan: no utterance of the {name} split has an alignment")
    scored = manifest.subset(np.array(aligned)[_pick(len(aligned), max_utterances, rng)])
    rows = {layer: [] for layer in teachers}
    for i in tqdm(range(len(scored)), desc=f"layer scan: score {name}", unit="utt", mininterval=2):
        for layer, feats in layer_fn(load_audio(scored.audio_path(i)), list(teachers)).items():
            rows[layer].append(teachers[layer].assign(feats))
    scores = {}
    for layer, teacher in teachers.items():
        paired = pair_frames(rows[layer], label_rate, scored, alignments)
        counts = joint_counts(paired.phones, paired.units, len(paired.phone_names), teacher.num_units)
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

"""PNMI per layer of an encoder (the paper's Figure 2): k-means on each layer, scored against phones."""
from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm import tqdm

from .audio import load_audio
from .kmeans import fit_kmeans
from .manifest import Manifest
from .quality import joint_counts, pair_frames, purity_pnmi

LayerFn = Callable[[np.ndarray, list[int]], dict[int, np.ndarray]]  # wav, layers -> {layer: (frames, dim)}


def layer_scan(manifest: Manifest, alignments: dict[str, list[str]], layer_fn: LayerFn, layers: list[int],
               num_units: int = 100, max_utterances: int = 200, label_rate: float = 50.0,
               seed: int = 0) -> dict[int, float]:
    """{layer: PNMI} of a k-means (fitted and scored on up to `max_utterances` aligned utterances)."""
    aligned = [i for i in range(len(manifest)) if manifest.utterance_id(i) in alignments]
    if not aligned:
        raise ValueError("layer scan: no utterance of the manifest has an alignment")
    chosen = sorted(np.random.default_rng(seed).permutation(aligned)[:max_utterances].tolist())
    feats = {layer: [] for layer in layers}
    for i in tqdm(chosen, desc="layer scan", unit="utt", mininterval=2):
        for layer, f in layer_fn(load_audio(manifest.audio_path(i)), layers).items():
            feats[layer].append(f)
    sub = Manifest(manifest.root, tuple(manifest.paths[i] for i in chosen), tuple(manifest.sizes[i] for i in chosen))
    scores = {}
    for layer in layers:
        sample = np.concatenate(feats[layer])
        teacher = fit_kmeans(sample, min(num_units, len(sample)), seed=seed)
        rows = [teacher.assign(f) for f in feats[layer]]
        paired = pair_frames(rows, label_rate, sub, alignments)
        counts = joint_counts(paired.phones, paired.units, len(paired.phone_names), teacher.num_units)
        scores[layer] = purity_pnmi(counts)["pnmi"]
    return scores

"""Triphone ABX speed: items of a synthetic split, random features, within and across speaker,
with the bootstrap the report draws.

    .venv/bin/python benchmarks/bench_abx.py [--utterances 200] [--dim 768]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clustering.abx import abx_score, across_cells, item_features, within_cells  # noqa: E402
from clustering.abx_items import subsample, triphone_items  # noqa: E402
from clustering.bootstrap import resample_weights  # noqa: E402
from clustering.manifest import Manifest  # noqa: E402

PHONES = ["a", "e", "i", "o", "u", "k"]


def split(rng, utterances: int, speakers: int) -> tuple[Manifest, dict, dict]:
    """60 phones per utterance (3-11 frames at 100 Hz each, no phone twice in a row), 10 speakers."""
    aligned = {}
    for u in range(utterances):
        phones = [PHONES[0]]
        while len(phones) < 60:
            phones += [p for p in [PHONES[rng.integers(len(PHONES))]] if p != phones[-1]]
        aligned[f"s{u % speakers}/u{u:04d}"] = [p for p in phones for _ in range(int(rng.integers(3, 12)))]
    uids = list(aligned)
    manifest = Manifest(Path("/synthetic"), tuple(f"{u}.wav" for u in uids),
                        tuple(len(aligned[u]) * 160 + 400 for u in uids))
    return manifest, aligned, {u: u.split("/")[0] for u in uids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    manifest, aligned, speakers = split(rng, args.utterances, 10)
    feats = [rng.standard_normal((len(aligned[manifest.utterance_id(i)]) // 2, args.dim)).astype(np.float32)
             for i in range(len(manifest))]
    items = subsample(triphone_items(manifest, aligned, speakers), 10, 0)
    owners = np.array([it.utterance for it in items])
    frames = item_features(feats, items, 50)
    for name, cells in (("within", within_cells(items, 10)), ("across", across_cells(items, 10, 5, 0))):
        begin = time.perf_counter()
        score = abx_score(cells, frames, owners)
        scored = time.perf_counter() - begin
        begin = time.perf_counter()
        score.resampled(resample_weights(len(manifest), 1000, 0))
        print(f"{name} speaker: {len(items)} items, {len(cells)} cells, error {score.error:.3f}: {scored:.1f} s, "
              f"1000 bootstrap resamples {time.perf_counter() - begin:.1f} s")


if __name__ == "__main__":
    main()

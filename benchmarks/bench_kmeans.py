"""k-means fitting: ours (k-means++ seed + faiss Lloyd) vs the reference sklearn MiniBatchKMeans
with the recipe's exact parameters, on the same frames, one run.

    .venv/bin/python benchmarks/bench_kmeans.py            # both cases
    .venv/bin/python benchmarks/bench_kmeans.py mfcc       # (a) only
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.data import layer_like_frames, mfcc_frames  # noqa: E402
from clustering.kmeans import fit_kmeans  # noqa: E402


def compare(name: str, feats, num_units: int) -> None:
    results = {}
    for backend in ("sklearn", "faiss"):
        begin = time.perf_counter()
        teacher = fit_kmeans(feats, num_units, backend=backend)
        results[backend] = (time.perf_counter() - begin, teacher.inertia(feats))
    (ref_t, ref_i), (our_t, our_i) = results["sklearn"], results["faiss"]
    print(f"{name}: {feats.shape[0]} frames x {feats.shape[1]} dims, K={num_units}")
    print(f"  sklearn MiniBatchKMeans (reference params): {ref_t:.1f} s, inertia {ref_i:.5g}")
    print(f"  ours (k-means++ seed + faiss):              {our_t:.1f} s, inertia {our_i:.5g}")
    print(f"  speed-up {ref_t / our_t:.1f}x, inertia ratio ours/reference {our_i / ref_i:.4f}")


def main() -> None:
    cases = sys.argv[1:] or ["mfcc", "layer"]
    if "mfcc" in cases:
        feats = mfcc_frames(1.5)[:500_000]
        compare("(a) MFCC", feats, 100)
    if "layer" in cases:
        compare("(b) 768-dim layer-like", layer_like_frames(200_000), 500)


if __name__ == "__main__":
    main()

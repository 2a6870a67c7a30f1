"""Labelling streams shard by shard: peak memory of `hubert labels` on a >= 3 GB feature set.

    .venv/bin/python benchmarks/bench_labels.py
"""
from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.data import OUT  # noqa: E402
from clustering.kmeans import KMeansInfo, KMeansTeacher  # noqa: E402
from clustering.manifest import write_manifest  # noqa: E402
from clustering.feature_shards import NpyRowWriter  # noqa: E402

FRAMES_PER_UTT, UTTERANCES, DIM, NSHARD = 500, 2_100, 768, 2  # 1.05M frames x 768 x 4 B = 3.2 GB


def main() -> None:
    work = OUT / "bench-labels"
    shutil.rmtree(work, ignore_errors=True)
    (work / "feat").mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_shard = UTTERANCES // NSHARD
    for rank in range(NSHARD):
        with NpyRowWriter(work / "feat" / f"train_{rank}_{NSHARD}.npy") as writer:
            for _ in range(per_shard):
                writer.append(rng.standard_normal((FRAMES_PER_UTT, DIM), dtype=np.float32))
        (work / "feat" / f"train_{rank}_{NSHARD}.len").write_text(f"{FRAMES_PER_UTT}\n" * per_shard)
    size = sum(p.stat().st_size for p in (work / "feat").glob("*.npy"))
    samples = (FRAMES_PER_UTT - 1) * 320 + 400
    write_manifest(work / "train.tsv", work, [(f"u{i}.wav", samples) for i in range(UTTERANCES)])
    KMeansTeacher(rng.standard_normal((500, DIM)).astype(np.float32), KMeansInfo(500, DIM, "random")).save(work / "km.npy")
    command = [sys.executable, "-m", "pipelines.cli", "labels", str(work), str(work / "feat"), str(work / "km.npy"),
               str(work / "labels"), "--splits", "train", "--label-rate", "50", "--nshard", str(NSHARD)]
    begin = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - begin
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    print(f"labelled {UTTERANCES * FRAMES_PER_UTT} frames x {DIM} dims ({size / 2**30:.2f} GiB of features, "
          f"{NSHARD} shards), K=500, in {seconds:.0f} s")
    print(f"  peak resident memory of `hubert labels`: {peak:.2f} GiB (bound: 1 GiB)")
    print(f"  command: {' '.join(command)}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

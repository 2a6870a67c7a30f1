"""MFCC dumping: ours (hubert features, 2 processes) vs the reference recipe (fairseq's
dump_mfcc_feature: one utterance at a time, one process), same corpus, one run.

    .venv/bin/python benchmarks/bench_mfcc.py
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.data import OUT, corpus  # noqa: E402
from clustering.features import dump_features, mfcc_features  # noqa: E402
from clustering.manifest import read_manifest  # noqa: E402
from clustering.feature_shards import FeatureShards  # noqa: E402


def reference(manifest) -> list[np.ndarray]:
    """fairseq examples/hubert/simple_kmeans/dump_mfcc_feature.py, in one process."""
    out = []
    for i in range(len(manifest)):
        wav, rate = sf.read(manifest.audio_path(i))
        x = torch.from_numpy(wav).float().view(1, -1)
        with torch.no_grad():
            mfccs = torchaudio.compliance.kaldi.mfcc(waveform=x, sample_frequency=rate, use_energy=False).transpose(0, 1)
            deltas = torchaudio.functional.compute_deltas(mfccs)
            ddeltas = torchaudio.functional.compute_deltas(deltas)
            out.append(torch.cat([mfccs, deltas, ddeltas], dim=0).transpose(0, 1).contiguous().numpy())
    return out


def main(rounds: int = 3) -> None:
    folder = corpus(2.0)
    manifest = read_manifest(folder / "train.tsv")
    seconds = sum(manifest.sizes) / 16000
    for i in range(len(manifest)):  # warm the page cache so neither side pays for the disk
        manifest.audio_path(i).read_bytes()
    target = OUT / "bench-mfcc"
    ref_times, ours_times = [], []
    for _ in range(rounds):  # alternate the two, report medians: this VM's speed drifts
        begin = time.perf_counter()
        ref = reference(manifest)
        ref_times.append(time.perf_counter() - begin)
        shutil.rmtree(target, ignore_errors=True)
        begin = time.perf_counter()
        dump_features(manifest, mfcc_features, target, "train", jobs=2)
        ours_times.append(time.perf_counter() - begin)
    ours = list(FeatureShards(target, "train"))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, ref))
    ref_time, ours_time = float(np.median(ref_times)), float(np.median(ours_times))
    print(f"MFCC dump of {seconds / 3600:.2f} h ({len(manifest)} utterances), {torch.get_num_threads()} threads, "
          f"median of {rounds} alternating rounds")
    print(f"  reference (1 process): {ref_time:.1f} s = {seconds / ref_time:.0f} s audio/s")
    print(f"  ours (2 processes):    {ours_time:.1f} s = {seconds / ours_time:.0f} s audio/s")
    print(f"  speed-up {ref_time / ours_time:.2f}x, max abs diff {diff:.2e}")


if __name__ == "__main__":
    main()

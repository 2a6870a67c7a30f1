"""Training throughput (seconds of audio per second) for `tiny` and `base` on this machine,
with the data loader's share of step time, on the built-in corpus with MFCC labels.

    .venv/bin/python benchmarks/bench_train.py [--updates-tiny 60] [--updates-base 4]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.data import OUT, corpus  # noqa: E402
from clustering.assign import assign_all, finish_label_dir  # noqa: E402
from clustering.features import dump_features, mfcc_features  # noqa: E402
from clustering.kmeans import fit_kmeans  # noqa: E402
from clustering.labels import write_labels  # noqa: E402
from clustering.manifest import read_manifest, write_manifest  # noqa: E402
from clustering.shards import FeatureShards  # noqa: E402
from pretrain.config import model_preset  # noqa: E402
from pretrain.train_config import apply_overrides, train_preset  # noqa: E402
from pretrain.trainer import train  # noqa: E402


def labelled_corpus() -> tuple[Path, Path]:
    data = corpus(0.5)
    labels = data / "labels100"
    if not (labels / "labels.json").exists():
        manifest = read_manifest(data / "train.tsv")
        dump_features(manifest, mfcc_features, data / "mfcc", "train", jobs=2)
        shards = FeatureShards(data / "mfcc", "train")
        teacher = fit_kmeans(shards.sample(0.5), 100)
        labels.mkdir(exist_ok=True)
        teacher.save(data / "km100.npy")
        write_labels(labels / "train.km", assign_all(shards, teacher, len(shards)))
        finish_label_dir(labels, data / "km100.npy", teacher, 100, "mfcc", {"train": manifest})
    return data, labels


def run(preset: str, updates: int, data: Path, labels: Path, **changes) -> dict:
    out = OUT / f"bench-train-{preset}"
    shutil.rmtree(out, ignore_errors=True)
    config = apply_overrides(train_preset(preset), {"max_updates": updates, "log_every": max(1, updates // 2),
                                                    "valid_every": 10**9, "save_every": 10**9, **changes})
    history = train(data, [labels], out, model_preset(preset), config, log=lambda m: None).history
    shutil.rmtree(out, ignore_errors=True)
    return [r for r in history if r["split"] == "train"][-1]  # second half: warmed up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates-tiny", type=int, default=60)
    parser.add_argument("--updates-base", type=int, default=4)
    args = parser.parse_args()
    data, labels = labelled_corpus()
    gpu = torch.cuda.is_available()
    device = f"cuda bf16 ({torch.cuda.get_device_name()})" if gpu else f"cpu ({torch.get_num_threads()} threads)"
    # a GPU gets the presets' micro-batches (base: the paper's 1.4M samples) in bf16; this CPU
    # tiny as preset and base at a quarter of its micro-batch, in fp32
    if gpu:
        tiny = base = {"precision": "bf16", "num_workers": 4}
    else:
        tiny, base = {}, {"max_tokens": 320_000, "min_sample_size": 8_000}
    for preset, updates, changes in (("tiny", args.updates_tiny, tiny), ("base", args.updates_base, base)):
        record = run(preset, updates, data, labels, **changes)
        print(f"{preset:<5} on {device}: {record['audio_s_per_s']:.1f} s of audio per second, "
              f"data loader {record['data_share']:.1%} of step time")


if __name__ == "__main__":
    main()

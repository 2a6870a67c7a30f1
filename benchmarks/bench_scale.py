"""The trainer's dataset at scale: arrays built, dataset opened, memory of each loader worker.

    .venv/bin/python benchmarks/bench_scale.py --utterances 1000000 [--workers 2] [--label-rate 5]
        [--fingerprint-files 100000]

Under benchmarks/out/scale/ it synthesises a manifest of N utterances with LibriSpeech-like lengths
(`bench_train.utterance_seconds`: mean 12.1 s), every line pointing at one of a few real 20 s audio
files (made once), and a label file at `--label-rate` Hz (rows far shorter than 50 Hz ones, so
N = 10M fits a laptop's disk; the label bytes are printed), builds the arrays (SPLIT.tsv.arrays,
SPLIT.km.arrays: `build_s`), opens the trainer's dataset as the trainer does (LabelledAudio, then
pretrain.trainer.MicroBatches with W DataLoader workers, which plans the first epoch: `open_s`),
draws 200 batches, and reads RssAnon from /proc: of this process (`rss_main_mib`) and of its
largest loader worker (`rss_worker_mib`). Then the rerun fingerprint of a folder of tiny files:
without a cache (every file read) and with one (no file read). It checks the free disk first and
removes everything it wrote. The last line:

    scale: utterances=N build_s=... open_s=... rss_main_mib=... rss_worker_mib=...
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.bench_train import utterance_seconds  # noqa: E402
from benchmarks.data import OUT  # noqa: E402

SAMPLE_RATE = 16000
REAL_FILES = 8  # real audio files the manifest lines point at, in turn
REAL_SECONDS = 20.0
NUM_UNITS = 500
BYTES_PER_UTTERANCE = 200  # disk per utterance besides its labels: manifest text and arrays (measured: ~120)
BYTES_PER_LABEL = 6  # label text (~4) and its uint16 array (2)
CHUNK = 100_000  # lines written at a time


def real_audio(folder: Path) -> list[str]:
    """REAL_FILES speech-like files under `folder`, named like LibriSpeech's (so the manifest's
    paths are as long as real ones); their relative paths."""
    import soundfile as sf

    rng, paths = np.random.default_rng(0), []
    for k in range(REAL_FILES):
        rel = f"train-clean-100/{103 + k}/{1240 + k}/{103 + k}-{1240 + k}-{k:04d}.wav"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        noise = 0.1 * rng.standard_normal(round(REAL_SECONDS * SAMPLE_RATE))  # what is said does not matter here
        sf.write(folder / rel, noise.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        paths.append(rel)
    return paths


def write_split(folder: Path, utterances: int, label_rate: int, seed: int = 0) -> int:
    """train.tsv (over real_audio), train.km at `label_rate` Hz, labels.json and dict.km.txt in
    `folder`; returns the label file's bytes. Sizes are whole label periods, so every row fits
    its utterance exactly."""
    from clustering.labels import LabelInfo, write_dictionary

    if SAMPLE_RATE % label_rate:
        raise ValueError(f"--label-rate {label_rate}: must divide {SAMPLE_RATE}")
    rng = np.random.default_rng(seed)
    paths = real_audio(folder / "audio")
    rows = [" ".join(map(str, rng.integers(0, NUM_UNITS, count))) + "\n" for count in range(40 * label_rate)]
    with open(folder / "train.tsv", "w") as manifest, open(folder / "train.km", "w") as labels:
        manifest.write(f"{(folder / 'audio').resolve()}\n")
        for begin in range(0, utterances, CHUNK):
            count = min(CHUNK, utterances - begin)
            periods = np.maximum(1, np.round(utterance_seconds(count, rng) * label_rate)).astype(np.int64)
            sizes = periods * (SAMPLE_RATE // label_rate)
            manifest.write("".join(f"{paths[(begin + i) % REAL_FILES]}\t{n}\n" for i, n in enumerate(sizes.tolist())))
            labels.write("".join(rows[p] for p in periods.tolist()))
    LabelInfo(NUM_UNITS, float(label_rate), "bench_scale", lines={"train": utterances}).save(folder)
    write_dictionary(folder, NUM_UNITS)
    return (folder / "train.km").stat().st_size


def build_arrays(folder: Path) -> tuple[float, float]:
    """(wall, CPU) seconds to build train.tsv.arrays and train.km.arrays, as the data and label stages do."""
    from clustering.label_arrays import write_label_arrays
    from clustering.manifest_arrays import write_manifest_arrays

    begin, cpu = time.perf_counter(), time.process_time()
    write_manifest_arrays(folder / "train.tsv")
    write_label_arrays(folder / "train.km", NUM_UNITS)
    return time.perf_counter() - begin, time.process_time() - cpu


def open_and_draw(folder: Path, workers: int, batches: int) -> dict:
    """Open the trainer's dataset over `folder` as the trainer does, draw `batches` batches with
    `workers` loader processes; seconds to open, RssAnon (MiB) of this process and of its largest
    loader worker, and this process's shared and file-backed resident memory."""
    import torch

    from pretrain.distributed import Workers
    from pretrain.labelled_audio import LabelledAudio
    from pretrain.train_config import apply_overrides
    from pretrain.trainer import MicroBatches
    try:
        from pretrain.presets import train_preset
    except ImportError:  # an older tree on PYTHONPATH (--measure of the code before memory maps)
        from pretrain.train_config import train_preset

    config = apply_overrides(train_preset("base"), {"num_workers": workers})
    begin, cpu = time.perf_counter(), time.process_time()
    data = LabelledAudio(folder / "train.tsv", [folder], config.min_sample_size)
    stream = MicroBatches(data, config, Workers(0, 1, torch.device("cpu")), 0, 0, ((400, 320),))
    opened, opened_cpu = time.perf_counter() - begin, time.process_time() - cpu
    try:
        for _ in range(batches):
            stream.next()
        loaders = child_pids(os.getpid())
        return {"open_s": opened, "open_cpu_s": opened_cpu, "rss_main_mib": memory_mib(os.getpid())["RssAnon"],
                "rss_worker_mib": max((memory_mib(pid)["RssAnon"] for pid in loaders), default=0.0),
                "loaders": len(loaders), "main": memory_mib(os.getpid())}
    finally:
        stream.close()


def measure(folder: Path, workers: int, batches: int) -> dict:
    """`open_and_draw` in a fresh process, as a trainer starts: nothing this one made is inherited."""
    done = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--workers", str(workers),
                           "--batches", str(batches)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"bench_scale --measure failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_mib(pid: int) -> dict[str, float]:
    """RssAnon, RssFile and RssShmem of process `pid`, in MiB (from /proc/PID/status)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem"):
            found[key] = int(value.split()[0]) / 1024
    return found


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (the DataLoader's workers), from /proc/PID/task/*/children."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def fingerprint_times(folder: Path, files: int) -> dict:
    """Seconds to fingerprint `files` tiny files without a cache, then rerun with it; files read each time."""
    from pipelines import fingerprint

    for i in range(files):
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.flac"
        if i % 1000 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(8, "little") * 16)
    relpaths = [f"{i // 1000:03d}/{i:06d}.flac" for i in range(files)]
    real, reads = fingerprint.file_digest, []
    fingerprint.file_digest = lambda path, *a: reads.append(path) or real(path, *a)
    try:
        times = {}
        for run in ("cold", "cached"):
            begin, before = time.perf_counter(), len(reads)
            fingerprint.folder_fingerprint(folder, relpaths, folder.parent / "fingerprints.json")
            times[f"{run}_s"], times[f"{run}_reads"] = time.perf_counter() - begin, len(reads) - before
    finally:
        fingerprint.file_digest = real
    return times


def check_disk(folder: Path, needed: int) -> None:
    """Print `df -h` of the disk and stop unless `needed` bytes (and 5 GiB more) are free there."""
    print(subprocess.run(["df", "-h", str(folder)], capture_output=True, text=True).stdout.strip())
    free = shutil.disk_usage(folder).free
    if free < needed + 5 * 2**30:
        sys.exit(f"bench_scale: needs about {needed / 2**30:.1f} GiB and 5 GiB to spare; {free / 2**30:.1f} GiB free")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--label-rate", type=int, default=5, help="Hz (divides 16000); 50 is the real rate")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--fingerprint-files", type=int, default=100_000, help="0: skip")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: open_and_draw, as JSON
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(open_and_draw(args.measure, args.workers, args.batches)))
        return
    if not args.utterances:
        parser.error("--utterances N is required")
    folder = OUT / "scale"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    check_disk(folder, args.utterances * (BYTES_PER_UTTERANCE + 12.1 * args.label_rate * BYTES_PER_LABEL))
    try:
        if args.fingerprint_files:
            times = fingerprint_times(folder / "tiny", args.fingerprint_files)
            print(f"fingerprint: files={args.fingerprint_files} cold_s={times['cold_s']:.2f} "
                  f"(files read {times['cold_reads']}) cached_s={times['cached_s']:.2f} "
                  f"(files read {times['cached_reads']})", flush=True)
            shutil.rmtree(folder / "tiny")
        begin = time.perf_counter()
        label_bytes = write_split(folder, args.utterances, args.label_rate)
        print(f"synthesised in {time.perf_counter() - begin:.0f} s: label text {label_bytes / 2**20:.0f} MiB "
              f"at {args.label_rate} Hz", flush=True)
        build_s, build_cpu = build_arrays(folder)
        sizes = {p.name: p.stat().st_size / 2**20 for p in sorted(folder.glob("train.*"))}
        print("on disk (MiB): " + ", ".join(f"{name} {mib:.0f}" for name, mib in sizes.items()), flush=True)
        found = measure(folder, args.workers, args.batches)
        main_memory = ", ".join(f"{k} {v:.0f}" for k, v in found["main"].items())
        print(f"trainer process (MiB): {main_memory}; {found['loaders']} loader workers; CPU seconds: build "
              f"{build_cpu:.1f}, open {found['open_cpu_s']:.2f}; load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"scale: utterances={args.utterances} build_s={build_s:.1f} open_s={found['open_s']:.2f} "
          f"rss_main_mib={found['rss_main_mib']:.0f} rss_worker_mib={found['rss_worker_mib']:.0f}")


if __name__ == "__main__":
    main()

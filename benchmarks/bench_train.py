"""Training throughput: the landed trainer (the "old path", a previous commit's pretrain/ and
clustering/, extracted beforehand into benchmarks/out/gpu-kit/) against this tree's, same data, same
card, one run.

For each preset and variant it prints seconds of audio fed to the model per second (after
cropping), timed by wall clock over a measured window of updates that follows a warm-up window;
MFU (FLOP per audio-second derived from the preset, against 989 TFLOP/s dense bf16, the datasheet,
and ~790, what a large bf16 matmul reaches on H100/H200); the data loader's share of wall time; and
the share of wall time the GPU is busy: kernel intervals from torch.profiler over a few updates
profiled after the measured window, the trace parsed after training, so neither the profiler nor
its parsing is timed. Every variant runs in its own process (the old one with the old tree first on
sys.path).

    .venv/bin/python benchmarks/bench_train.py --prepare-old        # here, with git: extract the old tree
    .venv/bin/python benchmarks/bench_train.py --mode cpu           # short: tiny and small, fp32
    python3 benchmarks/bench_train.py --mode gpu                    # base and small, bf16, ~4.5 min

The GPU mode never runs git (a GPU machine given a copy of the tree has no .git): it reads the old
tree from benchmarks/out/gpu-kit/ (carried there; benchmarks/prepare_gpu_kit.sh makes the folder)
and says what to run when it is missing. The corpus is synthetic speech-like noise with lengths
resembling LibriSpeech's (see `utterance_seconds`) and random 100 Hz labels: throughput does not
depend on what is said. It is written with the standard library (no soundfile), in seconds, on the
GPU machine; reading it back needs soundfile, installed there from the kit's wheels.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.data import GPU_KIT, OUT, write_wav  # noqa: E402

OLD_REV = "da37152"  # the trainer as landed before issue 12 (host syncs, cuDNN kernels)
PEAKS = {"datasheet": 989e12, "achievable": 790e12}  # H100/H200 dense bf16 FLOP/s
SAMPLE_RATE = 16000
PROFILED_UPDATES = 8  # at most; profiled after the measured window, one spare update either side
# variant -> train settings; "old" runs the old tree with the same (old-known) settings
VARIANTS = {
    "old": {},
    "new": {},
    "new, reference kernels": {"kernels": "reference"},
    "new, compile": {"compile": True},
    "new, crop grid 1 s": {"crop_multiple": 16000},
    "new, compile, crop grid 1 s": {"compile": True, "crop_multiple": 16000},
    "new, 2x micro-batch": {"double_batch": True},
}
PLANS = {  # mode -> (presets, variants, updates per log window, common settings)
    "gpu": (("base", "small"), ("old", "new", "new, compile", "new, crop grid 1 s", "new, compile, crop grid 1 s"),
            {"base": 20, "small": 40}, {"precision": "bf16", "num_workers": 4}),
    "cpu": (("tiny", "small"), ("old", "new"), {"tiny": 10, "small": 2},
            {"num_workers": 1}),
}


def utterance_seconds(count: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths resembling LibriSpeech train-960 (most utterances 12-16.5 s, a tail of short ones;
    an approximation, not measured from it): 70% uniform in [12, 16.5] s, 30% in [2, 12] s."""
    long = rng.random(count) < 0.7
    return np.where(long, rng.uniform(12.0, 16.5, count), rng.uniform(2.0, 12.0, count))


def make_corpus(folder: Path, hours: float, seed: int = 0) -> tuple[Path, Path]:
    """`hours` of speech-like noise (train.tsv) and random 100-unit labels at 100 Hz (labels/)."""
    from clustering.labels import write_dictionary, write_labels
    from clustering.manifest import write_manifest

    labels = folder / "labels"
    if (labels / "labels.json").exists():
        return folder, labels
    rng = np.random.default_rng(seed)
    seconds = utterance_seconds(int(hours * 3600 / 11.5), rng)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    labels.mkdir(exist_ok=True)
    entries, rows = [], []
    for index, length in enumerate(seconds):
        samples = int(length * SAMPLE_RATE)
        noise = rng.standard_normal(samples + 16).astype(np.float32)
        audio = 0.1 * np.convolve(noise, np.hanning(16) / 8, mode="valid")[:samples]  # low-passed, speech-like
        write_wav(folder / "wav" / f"u{index:05d}.wav", audio, SAMPLE_RATE)
        entries.append((f"wav/u{index:05d}.wav", samples))
        rows.append(rng.integers(0, 100, round(samples * 100 / SAMPLE_RATE)))
    write_manifest(folder / "train.tsv", folder, entries)
    write_labels(labels / "train.km", rows)
    write_dictionary(labels, 100)
    # only the keys the old tree's labels.json reader knows too (later ones have defaults)
    info = {"num_units": 100, "label_rate": 100.0, "features": "random (benchmark)", "lines": {"train": len(rows)}}
    (labels / "labels.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder, labels


def old_tree_folder(rev: str) -> Path:
    return GPU_KIT / f"old-{rev}"


def prepare_old(rev: str) -> Path:
    """The old tree's pretrain/ and clustering/ at `rev`, read with `git archive` (no git state
    changes) into the GPU kit, where a machine without git finds it."""
    folder = old_tree_folder(rev)
    if not (folder / "pretrain" / "trainer.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "pretrain", "clustering"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def flop_per_audio_second(config, frames_per_item: float, num_units: int = 100) -> dict:
    """Forward + backward FLOP per second of audio (3 x the forward's multiply-adds x 2), by part.
    Attention grows with the frames per item (the crop length)."""
    rate, cnn, in_dim = float(SAMPLE_RATE), 0.0, 1
    for dim, kernel, stride in config.conv_layers:
        rate /= stride
        cnn += 2 * in_dim * kernel * dim * rate
        in_dim = dim
    d, ffn, layers, frames = config.hidden_size, config.intermediate_size, config.num_hidden_layers, rate
    group = d // config.num_conv_pos_embedding_groups
    parts = {"cnn": cnn,
             "projection": 2 * config.conv_dim * d * frames,
             "positional conv": 2 * d * group * config.num_conv_pos_embeddings * frames,
             "transformer": layers * (8 * d * d + 4 * d * ffn) * frames,
             "attention": layers * 4 * frames_per_item * d * frames,
             "head": 2 * d * config.final_dim * frames + 2 * config.final_dim * num_units * frames}
    return {name: 3 * value for name, value in parts.items()}


def fed_audio(sizes: list[int], config, crop_multiple: int) -> tuple[float, float]:
    """(samples fed to the model in one epoch, mean frames per item) under `config`'s batching."""
    sys.path.insert(0, str(ROOT))
    from pretrain.batch_plan import plan_batches
    from pretrain.labelled_audio import batch_length

    fed, frames = 0, 0.0
    for batch in plan_batches(sizes, config.max_tokens, config.max_sample_size, config.seed, 0):
        length = batch_length([sizes[i] for i in batch], config.crop, config.max_sample_size, crop_multiple)
        fed += length * len(batch)
        frames += (length / 320) * length * len(batch)  # weighted by audio
    return fed, frames / max(fed, 1)


def run_variant(tree: Path, preset: str, updates: int, settings: dict, data: Path, labels: Path,
                profile: bool, timeout: float, work: Path = OUT) -> dict:
    """One training run (warm-up window, then a measured window of `updates`, then the profiled
    updates) in its own process, its run folder under `work` (removed after)."""
    spec = {"tree": str(tree), "preset": preset, "updates": updates, "settings": settings,
            "data": str(data), "labels": str(labels), "out": str(work / f"bench-train-{preset}"), "profile": profile}
    try:
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s, stopped"}
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(spec: dict) -> None:
    """Runs in a fresh process with `spec["tree"]` first on sys.path (the old or the new code):
    a warm-up window of `updates`, the measured window of `updates`, then (with `profile`) a spare
    update, the profiled updates and a spare update. Prints one JSON line."""
    sys.path.insert(0, spec["tree"])
    from pretrain import trainer
    from pretrain.train_config import apply_overrides
    try:
        from pretrain.presets import model_preset, train_preset
    except ImportError:  # the old tree, from before the presets were one table
        from pretrain.config import model_preset
        from pretrain.train_config import train_preset

    settings = dict(spec["settings"])
    base = train_preset(spec["preset"])
    if settings.pop("double_batch", False):
        settings["max_tokens"] = 2 * base.max_tokens
    updates = spec["updates"]
    busy = DeviceBusy(2 * updates + 1, min(PROFILED_UPDATES, updates - 2)) if spec["profile"] else None
    config = apply_overrides(base, {**settings, "max_updates": busy.last + 1 if busy else 2 * updates,
                                    "log_every": updates, "valid_every": 10**9, "save_every": 10**9,
                                    "warmup_updates": 10**6})
    if busy:
        real = trainer.lr_at  # called once at the start of every update
        trainer.lr_at = lambda update, c: (busy.at(update), real(update, c))[1]
    shutil.rmtree(spec["out"], ignore_errors=True)
    history = trainer.train(spec["data"], [spec["labels"]], spec["out"], model_preset(spec["preset"]), config,
                            log=lambda m: None).history
    shutil.rmtree(spec["out"], ignore_errors=True)
    measured = next(r for r in history if r["split"] == "train" and r["update"] == 2 * updates)
    print(json.dumps({"audio_s_per_s": measured["audio_s_per_s"], "data_share": measured["data_share"],
                      "gpu_busy": busy.share() if busy else None, "max_tokens": config.max_tokens,
                      "measured_updates": [updates, 2 * updates],
                      "profiled_updates": [busy.first, busy.last] if busy else None,
                      "busy_of": "GPU" if busy and busy.cuda else "CPU operators"}))


class DeviceBusy:
    """Share of wall time the device has a kernel (or copy) running, over updates first..last - 1
    (after the measured window): the union of the profiled intervals over their span. The profiler
    starts and stops at update boundaries behind a synchronize, and its trace is parsed in
    `share`, after training. On a machine without CUDA it profiles the CPU's operators instead."""

    def __init__(self, first: int, count: int):
        import torch

        self.first, self.last, self.profiler = first, first + max(count, 1), None
        self.cuda = torch.cuda.is_available()

    def at(self, update: int) -> None:
        """Called at the start of every update."""
        import torch

        if update in (self.first, self.last) and self.cuda:
            torch.cuda.synchronize()
        if update == self.first:
            activity = torch.profiler.ProfilerActivity.CUDA if self.cuda else torch.profiler.ProfilerActivity.CPU
            self.profiler = torch.profiler.profile(activities=[activity])
            self.profiler.start()
        elif update == self.last and self.profiler is not None:
            self.profiler.stop()

    def share(self) -> float | None:
        from torch.autograd import DeviceType

        kind = DeviceType.CUDA if self.cuda else DeviceType.CPU
        if self.profiler is None:
            return None
        return busy_share([(e.time_range.start, e.time_range.end) for e in self.profiler.events()
                           if e.device_type == kind])


def busy_share(intervals: list[tuple[float, float]]) -> float | None:
    """The share of the span from the first start to the last end that some interval covers."""
    if not intervals:
        return None
    intervals = sorted(intervals)
    busy, end = 0.0, intervals[0][0]
    for start, stop in intervals:
        busy += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return busy / max(end - intervals[0][0], 1e-9)


def describe_presets(preset: str, sizes: list[int]) -> float:
    """Print the preset's FLOP per audio-second (returned) and the audio crop grids discard
    against fairseq's exact crop, over one epoch's batches of utterances `sizes` long."""
    sys.path.insert(0, str(ROOT))
    from pretrain.presets import model_preset, train_preset

    config = train_preset(preset)
    exact, frames = fed_audio(sizes, config, 0)
    parts = flop_per_audio_second(model_preset(preset), frames)
    listed = ", ".join(f"{name} {value / 1e9:.2f}" for name, value in parts.items())
    print(f"{preset}: {sum(parts.values()) / 1e9:.1f} GFLOP per audio-second forward+backward ({listed}; "
          f"attention at {frames:.0f} frames per item)")
    available = sum(min(n, config.max_sample_size) for n in sizes)
    grid = ", ".join(f"{m} samples {1 - fed_audio(sizes, config, m)[0] / exact:.1%}" for m in (320, 3200, 16000))
    print(f"{preset} batching ({config.max_tokens} samples per micro-batch): the exact crop feeds "
          f"{exact / available:.1%} of the (capped) audio; a crop grid discards a further {grid}", flush=True)
    return sum(parts.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("gpu", "cpu"), default=None, help="default: gpu when CUDA is there")
    parser.add_argument("--variants", help="separated by semicolons, from: " + "; ".join(VARIANTS))
    parser.add_argument("--presets", help="comma-separated presets (default: the mode's)")
    parser.add_argument("--updates", type=int, help="updates per window (default: the mode's per preset)")
    parser.add_argument("--hours", type=float, default=1.0, help="corpus size")
    parser.add_argument("--old-rev", default=OLD_REV)
    parser.add_argument("--old-tree", type=Path, help="an extracted old tree (default: benchmarks/out/gpu-kit/old-REV)")
    parser.add_argument("--prepare-old", action="store_true", help="only extract the old tree (needs git)")
    parser.add_argument("--profile", action="store_true", help="the busy share in cpu mode too (always in gpu mode)")
    parser.add_argument("--budget", type=float, default=210.0,
                        help="seconds: no variant starts later, and each is stopped 45 s past it")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
    elif args.prepare_old:
        print(f"old tree at {prepare_old(args.old_rev)}")
    else:
        run_all(args, time.time())


def run_all(args, began: float) -> None:
    """Every variant of every preset, old and new first, within `args.budget` seconds."""
    import torch

    mode = args.mode or ("gpu" if torch.cuda.is_available() else "cpu")
    presets, variants, updates, common = PLANS[mode]
    presets = args.presets.split(",") if args.presets else presets
    variants = [v.strip() for v in args.variants.split(";")] if args.variants else variants
    old_tree = find_old_tree(args.old_tree, args.old_rev, mode) if "old" in variants else None
    data, labels = make_corpus(OUT / f"bench-corpus-{args.hours:g}h", args.hours)
    sizes = [int(line.split("\t")[1]) for line in (data / "train.tsv").read_text().splitlines()[1:]]
    device = torch.cuda.get_device_name() if mode == "gpu" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{device}, torch {torch.__version__}, corpus {args.hours:g} h ({len(sizes)} utterances), "
          f"old path = {args.old_rev}", flush=True)
    flops = {preset: describe_presets(preset, sizes) for preset in presets}
    baseline = {}
    for variant in variants:  # variant-major: old and new of every preset come first
        for preset in presets:
            left = args.budget - (time.time() - began)
            if left <= 0:
                print(f"  {preset:<5} {variant:<28} skipped: past the {args.budget:.0f} s budget")
                continue
            result = run_variant(old_tree if variant == "old" else ROOT, preset, args.updates or updates[preset],
                                 {**common, **VARIANTS[variant]}, data, labels, mode == "gpu" or args.profile,
                                 left + 45)
            print_result(preset, variant, result, baseline, flops[preset] if mode == "gpu" else None)


def find_old_tree(given: Path | None, rev: str, mode: str) -> Path:
    """The extracted old tree: `given`, or the kit's; extracted with git in cpu mode only (a GPU
    machine has a copy of the tree without .git)."""
    folder = given or old_tree_folder(rev)
    if (folder / "pretrain" / "trainer.py").exists():
        return folder
    if mode == "cpu" and given is None:
        return prepare_old(rev)
    raise SystemExit(f"no old tree at {folder}: run `bash benchmarks/prepare_gpu_kit.sh` (or `.venv/bin/python "
                     f"benchmarks/bench_train.py --prepare-old`) where the repository's git history is, and "
                     f"carry {GPU_KIT.relative_to(ROOT)} to this machine")


def print_result(preset: str, variant: str, result: dict, baseline: dict, flops: float | None) -> None:
    """One line: audio s/s, ratio to the old path, MFU (GPU), data loader share, GPU busy share."""
    if "error" in result:
        print(f"  {preset:<5} {variant:<28} failed: {result['error']}")
        return
    speed = result["audio_s_per_s"]
    if variant == "old":
        baseline[preset] = speed
    ratio = f"{speed / baseline[preset]:5.2f}x old" if preset in baseline else "   -     "
    mfu = (f"MFU {speed * flops / PEAKS['datasheet']:5.1%} (of ~790: {speed * flops / PEAKS['achievable']:5.1%})"
           if flops else "")
    busy = (f"{result['busy_of']} busy {result['gpu_busy']:.0%} (updates {result['profiled_updates'][0] + 1}-"
            f"{result['profiled_updates'][1]} profiled)" if result.get("gpu_busy") is not None else "")
    first, last = result["measured_updates"]
    print(f"  {preset:<5} {variant:<28} {speed:8.1f} s audio/s (updates {first + 1}-{last} timed)  {ratio}  "
          f"data loader {result['data_share']:5.1%}  {mfu}  {busy}", flush=True)


if __name__ == "__main__":
    main()

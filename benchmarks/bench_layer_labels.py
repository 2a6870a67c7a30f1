"""Iteration-2 labelling: BASE layer 6 -> nearest of 500 centroids -> .km lines, from audio files on
disk, in seconds of audio per second. The batched path (length-sorted padded batches, bf16 on a
GPU, audio decoded by loader workers, units assigned on the device) against the old per-utterance
path (one utterance at a time, float32, decoded in the same process), in the same run, on the CPU
and on the GPU when one is present, with the projected hours for LibriSpeech's 960 h.

    .venv/bin/python benchmarks/bench_layer_labels.py --seconds 60      # a short CPU run
    python3 benchmarks/bench_layer_labels.py                            # with a GPU: 6 h of audio, < 5 min

The model is BASE with random weights (the cost does not depend on them); the audio is speech-like
FLAC of 2-20 s, written once under benchmarks/out/.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.data import OUT  # noqa: E402
from clustering.assign import label_audio  # noqa: E402
from clustering.audio import FRAME_RATE, SAMPLE_RATE  # noqa: E402
from clustering.kmeans import KMeansInfo, KMeansTeacher, fit_kmeans  # noqa: E402
from clustering.labels import write_labels  # noqa: E402
from clustering.manifest import Manifest, read_manifest, write_manifest  # noqa: E402

LIBRISPEECH_SECONDS = 960 * 3600
LAYER, UNITS = 6, 500


def speech_like(samples: int, seed: int) -> np.ndarray:
    """Noise plus three gliding formant-like tones under a syllable-rate envelope: (samples,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SAMPLE_RATE
    out = 0.02 * rng.standard_normal(samples)
    for _ in range(3):
        freq = rng.uniform(150, 3000) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        out += 0.1 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi))
    return (out * envelope).astype(np.float32)


def _write_flac(item: tuple[Path, int, int]) -> None:
    import soundfile as sf

    path, samples, seed = item
    sf.write(path, speech_like(samples, seed), SAMPLE_RATE, subtype="PCM_16")


def corpus(seconds: float) -> Manifest:
    """FLAC files of 2-20 s adding up to `seconds`, written once (in parallel): their manifest."""
    folder = OUT / f"layer-labels-{seconds:g}s"
    if not (folder / "train.tsv").exists():
        rng = np.random.default_rng(0)
        lengths, total = [], 0
        while total < seconds * SAMPLE_RATE:
            lengths.append(int(rng.uniform(2, 20) * SAMPLE_RATE))
            total += lengths[-1]
        (folder / "audio").mkdir(parents=True, exist_ok=True)
        items = [(folder / "audio" / f"u{i:05d}.flac", n, i) for i, n in enumerate(lengths)]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_write_flac, items, chunksize=8))
        write_manifest(folder / "train.tsv", folder / "audio", [(p.name, n) for p, n, _ in items])
    return read_manifest(folder / "train.tsv")


def first_seconds(manifest: Manifest, seconds: float) -> Manifest:
    """The first utterances of `manifest` adding up to at least `seconds`."""
    ends = np.cumsum(manifest.sizes) / SAMPLE_RATE
    return manifest.subset(range(min(len(manifest), int(np.searchsorted(ends, seconds)) + 1)))


def audio_seconds(manifest: Manifest) -> float:
    return sum(manifest.sizes) / SAMPLE_RATE


def base_encoder(model: str | None = None):
    """BASE with random weights, or the encoder of `model` (a checkpoint or a Hugging Face folder)."""
    import torch

    from pretrain.presets import model_preset
    from pretrain.model import HubertEncoder
    from pretrain.model_io import load_encoder

    if model:
        return load_encoder(model).eval()
    torch.manual_seed(0)
    return HubertEncoder(model_preset("base")).eval()


def teacher_from(features, manifest: Manifest, path: str | None = None) -> KMeansTeacher:
    """The teacher at `path`, or UNITS centroids drawn from real layer frames of the first utterances
    (non-degenerate distances)."""
    if path:
        return KMeansTeacher.load(path)
    frames = np.concatenate(list(features.stream(first_seconds(manifest, 2 * UNITS / FRAME_RATE))))
    chosen = np.random.default_rng(0).choice(len(frames), UNITS, replace=False)
    return KMeansTeacher(frames[chosen], KMeansInfo(UNITS, frames.shape[1], "random frames"))


def labelled(manifest: Manifest, feature_fn, teacher: KMeansTeacher, out: Path) -> tuple[float, list[np.ndarray]]:
    """(seconds, labels): label every utterance of `manifest` and write the .km file."""
    begin = time.perf_counter()
    rows = label_audio(manifest, feature_fn, teacher)
    write_labels(out, rows)
    _sync()
    return time.perf_counter() - begin, rows


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(encoder, device: str, manifest: Manifest, old_manifest: Manifest, batch_seconds: float | None,
            work: Path, rounds: int, teacher_path: str | None = None) -> dict:
    """Batched and per-utterance labelling on `device` (median of `rounds` alternating rounds):
    throughputs and their labels' agreement."""
    from pretrain.layer_features import LayerFeatures

    batched = LayerFeatures(encoder, LAYER, device=device, batch_seconds=batch_seconds)
    exact = LayerFeatures(encoder, LAYER, device=device, precision="fp32")
    teacher = teacher_from(batched, manifest, teacher_path)
    labelled(first_seconds(manifest, 10), batched, teacher, work / "warmup.km")  # kernels, allocator
    new_times, old_times = [], []
    for _ in range(rounds):
        new_time, new_rows = labelled(manifest, batched, teacher, work / f"batched-{device}.km")
        old_time, old_rows = labelled(old_manifest, lambda wav: exact(wav), teacher, work / f"old-{device}.km")
        new_times.append(new_time)
        old_times.append(old_time)
    new_time, old_time = float(np.median(new_times)), float(np.median(old_times))
    agree = np.mean(np.concatenate(new_rows[:len(old_rows)]) == np.concatenate(old_rows))
    return {"device": device, "bf16": batched.bf16, "new": audio_seconds(manifest) / new_time,
            "new_s": new_time, "new_audio": audio_seconds(manifest), "old": audio_seconds(old_manifest) / old_time,
            "old_s": old_time, "old_audio": audio_seconds(old_manifest), "agree": agree,
            "loader_workers": batched.loader_workers, "batch_seconds": batched.batch_samples / SAMPLE_RATE}


def decode_only(manifest: Manifest, workers: int, batch_seconds: float) -> float:
    """Seconds of audio per second the loader workers decode and pad, with no model."""
    import torch

    from pretrain.layer_features import MAX_CHUNK, BatchAudio, plan_feature_batches

    batches = plan_feature_batches(manifest.sizes, round(batch_seconds * SAMPLE_RATE))
    loader = torch.utils.data.DataLoader(BatchAudio(manifest, batches, MAX_CHUNK, False, 400), batch_size=None,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    begin = time.perf_counter()
    for _ in loader:
        pass
    return audio_seconds(manifest) / (time.perf_counter() - begin)


def kmeans_compare(encoder, manifest: Manifest, frames: int, devices: list[str]) -> list[str]:
    """faiss on the CPU and torch on each device, on the same sample of layer-6 frames."""
    from pretrain.layer_features import LayerFeatures

    features = LayerFeatures(encoder, LAYER, device=devices[-1])
    rows = features.stream(first_seconds(manifest, frames / FRAME_RATE + 1))
    sample = np.concatenate(list(rows))[:frames]
    lines, reference = [], None
    for backend, device in [("faiss", "cpu")] + [("torch", d) for d in devices]:
        teacher = fit_kmeans(sample, UNITS, backend, device=device)
        reference = reference or teacher.info.inertia
        lines.append(f"  {backend} on {device}: {teacher.info.seconds:.1f} s, inertia {teacher.info.inertia:.5g} "
                     f"(ratio to faiss {teacher.info.inertia / reference:.4f})")
    return [f"k-means on {len(sample)} layer-{LAYER} frames x {sample.shape[1]} dims, K={UNITS}:"] + lines


def report(result: dict) -> str:
    name = result["device"]
    if name == "cuda":
        import torch

        name = f"cuda ({torch.cuda.get_device_name()})"
    new, old = result["new"], result["old"]
    return (f"{name}: batched {'bf16' if result['bf16'] else 'fp32'} ({result['batch_seconds']:g} s batches, "
            f"{result['loader_workers']} loader workers) {new:,.1f} s audio/s ({result['new_audio']:.0f} s in "
            f"{result['new_s']:.1f} s); per-utterance fp32 {old:,.1f} s audio/s ({result['old_audio']:.0f} s in "
            f"{result['old_s']:.1f} s); {new / old:.1f}x; labels agree {100 * result['agree']:.2f}%\n"
            f"  960 h: {LIBRISPEECH_SECONDS / new / 3600:,.2f} h batched, {LIBRISPEECH_SECONDS / old / 3600:,.1f} h "
            f"per-utterance (one {name.split(' ')[0]} device)")


def main(argv: list[str] | None = None) -> None:
    import torch

    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=21600 if gpu else 60, help="audio in the corpus")
    p.add_argument("--cpu-seconds", type=float, default=60, help="audio labelled on the CPU (both paths)")
    p.add_argument("--old-seconds", type=float, default=600, help="audio for the per-utterance path on a GPU")
    p.add_argument("--devices", default="cpu,cuda" if gpu else "cpu")
    p.add_argument("--batch-seconds", type=float, default=None, help="padded audio per pass (library default)")
    p.add_argument("--model", help="a trained checkpoint or Hugging Face folder instead of random BASE weights")
    p.add_argument("--teacher", help="its k-means teacher (.npy) instead of centroids drawn from its frames")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of both paths; medians reported")
    p.add_argument("--kmeans-frames", type=int, default=200_000 if gpu else 0, help="0: no k-means comparison")
    args = p.parse_args(argv)
    manifest = corpus(args.seconds)
    work = OUT / "layer-labels-out"
    work.mkdir(parents=True, exist_ok=True)
    encoder = base_encoder(args.model)
    devices = args.devices.split(",")
    print(f"{args.model or 'BASE'} layer {LAYER} -> {UNITS} units -> .km, FLAC of 2-20 s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} cores")
    for device in devices:
        seconds = args.cpu_seconds if device == "cpu" else args.seconds
        subset = first_seconds(manifest, seconds)
        old = subset if device == "cpu" else first_seconds(manifest, min(args.old_seconds, seconds))
        result = measure(encoder, device, subset, old, args.batch_seconds, work, args.rounds, args.teacher)
        print(report(result), flush=True)
    workers = result["loader_workers"]  # as the last device's batched path used them
    rate = decode_only(first_seconds(manifest, min(args.seconds, 3600)), workers, result["batch_seconds"])
    print(f"decode and pad only ({workers} loader workers): {rate:,.0f} s audio/s")
    if args.kmeans_frames:
        print("\n".join(kmeans_compare(encoder, manifest, args.kmeans_frames, [d for d in devices])))


if __name__ == "__main__":
    main()

"""Teacher features: the reference MFCC recipe, and sharded, resumable feature dumps.

A dump of split `train` as shard `rank` of `nshard` is two files, as fairseq
writes them: `train_{rank}_{nshard}.npy` (all frames, (frames, dim) float32)
and `train_{rank}_{nshard}.len` (frames per utterance, one per line).
"""
from __future__ import annotations

import functools
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
from tqdm import tqdm

from .atomic import atomic_write, write_text
from .audio import MFCC_HOP, MFCC_WINDOW, SAMPLE_RATE, load_listed_audio, short_audio_reason
from .heap import reuse_freed_memory
from .manifest import Manifest
from .path_checks import output_folder
from .feature_shards import NpyRowWriter

FeatureFn = Callable[[np.ndarray], np.ndarray]  # wav (samples,) float32 -> (frames, dim) float32
MFCC_DIM = 39


def mfcc_features(wav: np.ndarray) -> np.ndarray:
    """Kaldi MFCC (13, no energy) + delta + delta-delta, as fairseq's dump_mfcc_feature.

    wav: (samples,) float at 16 kHz. Returns (frames, 39) float32 at 100 Hz,
    frames = 1 + (samples - 400) // 160 (Kaldi's snip_edges).

    Bit for bit what `torchaudio.compliance.kaldi.mfcc(wav, sample_frequency=16000,
    use_energy=False)` and two `torchaudio.functional.compute_deltas` give, in about
    half the time: the filter banks are built once, the unused raw energy is not
    computed, |FFT| is taken in float64 (the same correctly rounded float32 values
    as torch's complex abs, faster), and deltas are summed in the order of torch's conv.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
    if x.shape[0] < MFCC_WINDOW:
        return np.zeros((0, MFCC_DIM), np.float32)
    banks = _kaldi_matrices()
    with torch.inference_mode():
        frames = x.unfold(0, MFCC_WINDOW, MFCC_HOP)  # (frames, 400), a view
        frames = frames - frames.mean(1, keepdim=True)  # remove DC offset
        previous = torch.cat([frames[:, :1], frames[:, :-1]], 1)
        frames = (frames - PREEMPHASIS * previous) * banks.window
        spectrum = torch.fft.rfft(frames, n=FFT_SIZE)  # zero-padded to 512
        power = torch.from_numpy(_magnitude(spectrum.numpy())).pow(2.0)  # (frames, 257)
        log_mel = torch.max(torch.mm(power, banks.mel.T), banks.floor).log()  # (frames, 23)
        mfcc = (log_mel.matmul(banks.dct[:, :NUM_CEPS]) * banks.lifter).T  # (13, frames)
        delta = _deltas(mfcc)
        return torch.cat([mfcc, delta, _deltas(delta)], 0).T.contiguous().numpy()


FFT_SIZE = 512  # the 400-sample window padded to a power of two
PREEMPHASIS = 0.97
NUM_MEL_BINS, NUM_CEPS, CEPSTRAL_LIFTER = 23, 13, 22.0


@dataclass(frozen=True)
class _KaldiMatrices:
    window: torch.Tensor  # (1, 400) povey window
    mel: torch.Tensor  # (23, 257) triangular mel filters, last FFT bin unused
    dct: torch.Tensor  # (23, 23) Kaldi's DCT (first column sqrt(1/23))
    lifter: torch.Tensor  # (1, 13)
    floor: torch.Tensor  # float32 epsilon: log floor of mel energies


@functools.lru_cache(maxsize=1)
def _kaldi_matrices() -> _KaldiMatrices:
    """Kaldi's MFCC constants at 16 kHz, built with torchaudio's own functions, once per process."""
    import torch
    import torchaudio

    mel, _ = torchaudio.compliance.kaldi.get_mel_banks(NUM_MEL_BINS, FFT_SIZE, float(SAMPLE_RATE), 20.0, 0.0,
                                                        100.0, -500.0, 1.0)
    dct = torchaudio.functional.create_dct(NUM_MEL_BINS, NUM_MEL_BINS, "ortho")
    dct[:, 0] = math.sqrt(1 / float(NUM_MEL_BINS))
    index = torch.arange(NUM_CEPS)
    lifter = 1.0 + 0.5 * CEPSTRAL_LIFTER * torch.sin(math.pi * index / CEPSTRAL_LIFTER)
    window = torch.hann_window(MFCC_WINDOW, periodic=False).pow(0.85)
    return _KaldiMatrices(window[None], torch.nn.functional.pad(mel.float(), (0, 1)), dct, lifter[None],
                          torch.tensor(torch.finfo(torch.float32).eps))


def _magnitude(spectrum: np.ndarray) -> np.ndarray:
    """|z| of complex64 (frames, bins), correctly rounded to float32 via float64."""
    parts = spectrum.view(np.float32).astype(np.float64)  # (frames, 2 * bins): re, im, re, im, ...
    parts *= parts
    return np.sqrt(parts[:, 0::2] + parts[:, 1::2]).astype(np.float32)


def _deltas(x: torch.Tensor) -> torch.Tensor:
    """torchaudio's compute_deltas (window 5, edges repeated) for x (channels, frames),
    summed left to right like its convolution so the result is bit-identical."""
    import torch

    frames = x.shape[1]
    padded = torch.cat([x[:, :1], x[:, :1], x, x[:, -1:], x[:, -1:]], 1)
    at = [padded[:, k:k + frames] for k in range(5)]
    return (-2 * at[0] - at[1] + at[3] + 2 * at[4]) / 10


def shard_paths(out_dir: str | Path, split: str, rank: int, nshard: int) -> tuple[Path, Path]:
    stem = Path(out_dir) / f"{split}_{rank}_{nshard}"
    return stem.with_suffix(".npy"), stem.with_suffix(".len")


class FeatureError(ValueError):
    """A feature function that failed on an utterance; the message names its file and manifest line."""


class BatchedFeatures(Protocol):
    """A feature function that also computes many utterances at once (a model's layer features).

    `stream(manifest, lines, reduce)` yields, for each of `lines` in order, its (frames, dim)
    float32 features, or `reduce` of them: a (frames, dim) tensor -> tensor function run where the
    features are (the GPU), e.g. a teacher's nearest centroid, so only its result comes back.
    """

    def __call__(self, wav: np.ndarray) -> np.ndarray: ...

    def stream(self, manifest: Manifest, lines: range, reduce=None) -> Iterator[np.ndarray]: ...


def _short_audio_fix(num_samples: int) -> str:
    short = short_audio_reason(num_samples)
    return f"{short}: remove the line or rescan with `hubert manifest`, which rejects it" if short else ""


def check_audio_length(path: Path, line: int, num_samples: int) -> None:
    """FeatureError naming the file, its manifest line and the fix when it is shorter than one frame."""
    fix = _short_audio_fix(num_samples)
    if fix:
        raise FeatureError(f"{path} (manifest line {line}): {fix}")


def utterance_features(feature_fn: FeatureFn, path: Path, line: int) -> np.ndarray:
    """`feature_fn` of the audio at `path` (manifest line `line`), (frames, dim) float32.

    An error of the feature function is raised again as FeatureError naming the file and the
    line, with the fix when the audio is shorter than one frame.
    """
    wav = load_listed_audio(path, line)
    try:
        return np.asarray(feature_fn(wav), dtype=np.float32)
    except Exception as error:
        fix = _short_audio_fix(len(wav)) or "check this file"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise FeatureError(f"{path} (manifest line {line}): feature extraction failed ({first}); "
                           f"{fix}") from error


class _FileFeatures:
    """Picklable `(path, manifest line) -> features` for worker processes."""

    def __init__(self, feature_fn: FeatureFn):
        self.feature_fn = feature_fn

    def __call__(self, item: tuple[Path, int]) -> np.ndarray:
        return utterance_features(self.feature_fn, *item)


def shard_features(manifest: Manifest, feature_fn: FeatureFn | BatchedFeatures, lines: range,
                   jobs: int = 1, reduce=None) -> Iterator[np.ndarray]:
    """Features of manifest `lines`, in order: (frames, dim) float32 each, or `reduce` of them.

    A BatchedFeatures streams them in its own batches; a plain feature function runs utterance
    by utterance, in `jobs` processes when > 1 (order is kept; use 1 for functions that hold a
    model). `reduce` takes and returns torch tensors (see BatchedFeatures).
    """
    if hasattr(feature_fn, "stream"):
        yield from feature_fn.stream(manifest, lines, reduce)
        return
    import torch

    items = [(manifest.audio_path(i), manifest.line_number(i)) for i in lines]
    compute = _FileFeatures(feature_fn)
    pool = ProcessPoolExecutor(jobs, initializer=_feature_process) if jobs > 1 else None
    try:
        for feats in pool.map(compute, items, chunksize=4) if pool else map(compute, items):
            yield feats if reduce is None else reduce(torch.from_numpy(feats)).numpy()
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def _feature_process() -> None:
    """Set up a feature worker process: one torch thread (one utterance is too small to share, the
    parallelism is across processes) and freed memory kept for reuse. Only in processes made for
    it: a function called in the user's process leaves its settings alone."""
    import torch

    torch.set_num_threads(1)
    reuse_freed_memory()


def dump_features(manifest: Manifest, feature_fn: FeatureFn | BatchedFeatures, out_dir: str | Path,
                  split: str, rank: int = 0, nshard: int = 1, jobs: int = 1) -> tuple[Path, Path]:
    """Compute `feature_fn` for this shard's utterances and write the .npy/.len pair.

    Output goes to temporary names (`atomic_write`, one per process) and is renamed only when
    complete, so a job killed at any point leaves no partial shard and its rerun writes the
    same bytes, and two jobs dumping the same shard at once both succeed (the last rename wins,
    with the same bytes). A shard whose two files already exist is left as it is. `jobs` > 1
    decodes and computes a plain feature function in that many processes (order
    is kept); a BatchedFeatures computes in its own batches. An utterance the
    feature function fails on raises FeatureError naming its audio file and line.
    """
    npy_path, len_path = shard_paths(output_folder(out_dir), split, rank, nshard)
    if npy_path.exists() and len_path.exists():
        return npy_path, len_path
    lines = manifest.shard(rank, nshard)
    reuse_freed_memory()  # inherited by the forked workers
    with atomic_write(npy_path) as tmp_npy:  # the .npy appears last: its presence means the shard is whole
        with NpyRowWriter(tmp_npy) as writer:
            lengths = []
            for feats in tqdm(shard_features(manifest, feature_fn, lines, jobs), total=len(lines),
                              desc=f"features {split} {rank}/{nshard}", unit="utt", mininterval=2):
                writer.append(feats)
                lengths.append(len(feats))
        write_text(len_path, "".join(f"{n}\n" for n in lengths))
    return npy_path, len_path

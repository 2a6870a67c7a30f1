"""Audio constants and loading: the one place that knows rates.

Every other module asks here for sample rate, frame rates and label ratios
instead of writing 16000, 320, 50 or 100 itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ConvSpec = tuple[tuple[int, int], ...]  # (kernel, stride) of each conv layer, first layer first

SAMPLE_RATE = 16_000  # Hz, what the model consumes
BASE_CONV: ConvSpec = ((10, 5),) + ((3, 2),) * 4 + ((2, 2),) * 2  # HuBERT's waveform CNN
MFCC_HOP = 160  # 10 ms Kaldi frame shift
MFCC_WINDOW = 400  # 25 ms Kaldi frame length
MFCC_FRAMES: ConvSpec = ((MFCC_WINDOW, MFCC_HOP),)  # MFCC framing as a one-layer spec
ALIGNMENT_RATE = SAMPLE_RATE // MFCC_HOP  # frame-level phone alignments (fairseq format) are 100 Hz
LENGTH_TOLERANCE_S = 0.1  # label/audio length mismatch allowed before it is a data error


def total_stride(spec: ConvSpec) -> int:
    """Samples between consecutive output frames: the product of the strides."""
    stride = 1
    for _, s in spec:
        stride *= s
    return stride


def receptive_field(spec: ConvSpec) -> int:
    """Samples one output frame sees."""
    field, jump = 1, 1
    for kernel, stride in spec:
        field += (kernel - 1) * jump
        jump *= stride
    return field


CONV_STRIDE = total_stride(BASE_CONV)  # 320 samples per model frame; labels assume it for every model
RECEPTIVE_FIELD = receptive_field(BASE_CONV)  # 400 samples
FRAME_RATE = SAMPLE_RATE // CONV_STRIDE  # 50 Hz model frames
MFCC_RATE = SAMPLE_RATE // total_stride(MFCC_FRAMES)  # 100 Hz MFCC frames / MFCC labels
MIN_AUDIO_SAMPLES = MFCC_WINDOW  # shortest usable audio: one MFCC frame and one model frame

assert FRAME_RATE * CONV_STRIDE == SAMPLE_RATE
assert MFCC_RATE * MFCC_HOP == SAMPLE_RATE
assert (CONV_STRIDE, RECEPTIVE_FIELD, FRAME_RATE, MFCC_RATE) == (320, 400, 50, 100)
assert MIN_AUDIO_SAMPLES >= RECEPTIVE_FIELD  # a file that long gives at least one BASE model frame


def check_conv_spec(spec: ConvSpec) -> None:
    """ValueError unless `spec` makes the 50 Hz frames every label file assumes."""
    if not spec or any(k < 1 or s < 1 for k, s in spec):
        raise ValueError(f"conv layers must have positive kernels and strides, got {spec}")
    if total_stride(spec) != CONV_STRIDE:
        raise ValueError(f"the conv strides multiply to {total_stride(spec)}; labels assume {CONV_STRIDE} "
                         f"({FRAME_RATE} Hz frames at {SAMPLE_RATE} Hz): change a stride")


AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")


class AudioError(ValueError):
    """A file that cannot be used as training audio; the message names it and why."""


def num_model_frames(num_samples: int, spec: ConvSpec = BASE_CONV) -> int:
    """Frames the conv stack `spec` (BASE by default; no padding) makes from `num_samples`, layer by layer."""
    for kernel, stride in spec:
        num_samples = (num_samples - kernel) // stride + 1 if num_samples >= kernel else 0
    return num_samples


def short_audio_reason(num_samples: int) -> str:
    """Why `num_samples` is too short to use ("" when it is long enough): MIN_AUDIO_SAMPLES is
    one 25 ms frame, below which there is neither an MFCC frame nor a model frame."""
    if num_samples >= MIN_AUDIO_SAMPLES:
        return ""
    return (f"{num_samples} samples, shorter than one {1000 * MIN_AUDIO_SAMPLES // SAMPLE_RATE} ms frame "
            f"({MIN_AUDIO_SAMPLES} samples)")


def expected_label_count(num_samples: int, label_rate: float) -> float:
    """Labels a `num_samples`-long utterance should carry at `label_rate` Hz (fractional)."""
    return num_samples * label_rate / SAMPLE_RATE


def label_indices(num_frames: int, label_rate: float) -> np.ndarray:
    """The label each model frame 0..num_frames-1 predicts, floor(t * label_rate * stride / sample rate):
    every other label at 100 Hz, each label at 50 Hz; (num_frames,) int64."""
    return (np.arange(num_frames) * (label_rate * CONV_STRIDE) // SAMPLE_RATE).astype(np.int64)


def load_audio(path: str | Path, min_samples: int = 1) -> np.ndarray:
    """Decode `path` to 16 kHz mono float32, shape (samples,).

    Multichannel audio is averaged to mono; other rates are resampled with
    `torchaudio.functional.resample`. Raises AudioError naming the file for an
    unreadable or truncated file, no samples, NaN/Inf samples, or fewer than
    `min_samples` samples.
    """
    import soundfile as sf

    path = Path(path)
    if path.suffix.lower() == ".wav":
        _check_wav_complete(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, ...
        raise AudioError(f"{path}: cannot decode audio ({error}); check the file is complete and "
                         f"in one of {', '.join(AUDIO_EXTENSIONS)}") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file has zero samples")
    wav = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioError(f"{path}: {bad} NaN/Inf samples; re-export the audio")
    if rate != SAMPLE_RATE:
        wav = resample(wav, rate)
    if wav.shape[0] < min_samples:
        raise AudioError(f"{path}: {wav.shape[0]} samples at {SAMPLE_RATE} Hz, "
                         f"shorter than the minimum {min_samples}")
    return np.ascontiguousarray(wav, dtype=np.float32)


MOVED_AUDIO_FIX = ("it was moved or deleted after the manifest was written: put it back, or rescan the audio "
                   "folder with `hubert manifest`")


def load_listed_audio(path: str | Path, line: int) -> np.ndarray:
    """`load_audio` of the file on manifest line `line`; AudioError naming the file, the line and the fix."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path} (manifest line {line}): audio file not found; {MOVED_AUDIO_FIX}")
    try:
        return load_audio(path)
    except AudioError as error:
        raise AudioError(f"{path} (manifest line {line}): {str(error).removeprefix(f'{path}: ')}") from None


def resample(wav: np.ndarray, rate: int) -> np.ndarray:
    """Resample mono `wav` (samples,) from `rate` Hz to SAMPLE_RATE."""
    import torch
    import torchaudio.functional as F

    out = F.resample(torch.from_numpy(np.ascontiguousarray(wav)), rate, SAMPLE_RATE)
    return out.numpy()



def _check_wav_complete(path: Path) -> None:
    """Raise AudioError when a RIFF/WAVE file holds fewer data bytes than its header declares.

    libsndfile quietly shortens a truncated wav instead of failing, which would
    put a cut-off utterance into a manifest with a wrong length.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not RIFF: let the decoder report it
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                remaining = path.stat().st_size - f.tell()
                if size != 0xFFFFFFFF and remaining < size:
                    raise AudioError(f"{path}: truncated: header declares {size} data bytes, "
                                     f"file holds {remaining}; re-copy or re-export the file")
                return
            f.seek(size + (size & 1), 1)

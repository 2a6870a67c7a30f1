"""Audio constants and loading: the one place that knows rates.

Every other module asks here for sample rate, frame rates and label ratios
instead of writing 16000, 320, 50 or 100 itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000  # Hz, what the model consumes
CONV_STRIDE = 320  # samples per model frame (product of the CNN strides)
RECEPTIVE_FIELD = 400  # samples one frame of the BASE CNN sees
FRAME_RATE = SAMPLE_RATE // CONV_STRIDE  # 50 Hz model frames
MFCC_HOP = 160  # 10 ms Kaldi frame shift
MFCC_WINDOW = 400  # 25 ms Kaldi frame length
MFCC_RATE = SAMPLE_RATE // MFCC_HOP  # 100 Hz MFCC frames / MFCC labels
ALIGNMENT_RATE = MFCC_RATE  # frame-level phone alignments (fairseq format) are 100 Hz
LENGTH_TOLERANCE_S = 0.1  # label/audio length mismatch allowed before it is a data error
MIN_AUDIO_SAMPLES = MFCC_WINDOW  # shortest usable audio: one MFCC frame and one model frame

assert FRAME_RATE * CONV_STRIDE == SAMPLE_RATE
assert MFCC_RATE * MFCC_HOP == SAMPLE_RATE
assert FRAME_RATE == 50 and MFCC_RATE == 100
assert MIN_AUDIO_SAMPLES >= RECEPTIVE_FIELD  # a file that long gives at least one model frame

AUDIO_EXTENSIONS = ("flac", "wav", "ogg", "mp3")


class AudioError(ValueError):
    """A file that cannot be used as training audio; the message names it and why."""


def label_ratio(label_rate: float) -> float:
    """Labels per model frame: 2.0 for 100 Hz MFCC labels, 1.0 for 50 Hz layer labels."""
    if label_rate <= 0:
        raise ValueError(f"label rate must be positive, got {label_rate}")
    return label_rate / FRAME_RATE


def num_model_frames(num_samples: int) -> int:
    """Frames the BASE CNN (receptive field 400, stride 320) makes from `num_samples`."""
    return max(0, (num_samples - RECEPTIVE_FIELD) // CONV_STRIDE + 1)


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


def label_index(frame: int, label_rate: float) -> int:
    """Label that model frame `frame` predicts: floor(t * label_rate * stride / sr)."""
    return int(frame * label_rate * CONV_STRIDE // SAMPLE_RATE)


def label_indices(num_frames: int, label_rate: float) -> np.ndarray:
    """`label_index` for frames 0..num_frames-1 at once, (num_frames,) int64."""
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

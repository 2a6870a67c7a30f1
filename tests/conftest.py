"""Shared fixtures: small audio folders made on the spot (no downloads)."""
import os

# MKL may round differently with different memory alignment; exact-resume tests need bitwise
# reproducible BLAS (the `hubert` command sets the same default).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
import numpy as np
import pytest
import soundfile as sf

from clustering.manifest import read_manifest, write_manifest


def speechlike(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Noise shaped by a few random formant-like tones, so MFCCs vary over time (samples,)."""
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    out = 0.02 * rng.standard_normal(n)
    for _ in range(3):
        f = rng.uniform(150, 3000) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        out += 0.1 * np.sin(2 * np.pi * np.cumsum(f) / 16000)
    return out.astype(np.float32)


@pytest.fixture
def tiny_manifest(tmp_path):
    """A manifest of 7 utterances of 0.5 to 2 s under tmp_path/audio."""
    rng = np.random.default_rng(0)
    root = tmp_path / "audio"
    root.mkdir()
    entries = []
    for i in range(7):
        wav = speechlike(0.5 + 0.25 * i, rng)
        sf.write(root / f"u{i}.wav", wav, 16000, subtype="FLOAT")
        entries.append((f"u{i}.wav", len(wav)))
    write_manifest(tmp_path / "train.tsv", root, entries)
    return read_manifest(tmp_path / "train.tsv")
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))

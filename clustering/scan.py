"""Scan a folder of audio into train/valid manifests, rejecting bad files."""
from __future__ import annotations

import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .audio import AUDIO_EXTENSIONS, AudioError, load_audio
from .manifest import write_manifest


@dataclass
class ScanResult:
    train: list[tuple[str, int]]
    valid: list[tuple[str, int]]
    rejected: list[tuple[str, str]]  # (relpath, reason)

    def summary(self) -> str:
        return (f"{len(self.train)} train, {len(self.valid)} valid, "
                f"{len(self.rejected)} rejected")


def find_audio(audio_dir: Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """Relative paths of audio files under `audio_dir`, sorted, so scans are deterministic."""
    suffixes = {"." + e.lower().lstrip(".") for e in extensions}
    found = [str(p.relative_to(audio_dir)) for p in audio_dir.rglob("*")
             if p.is_file() and p.suffix.lower() in suffixes]
    return sorted(found)


def _probe(path: str) -> tuple[int, str]:
    """(num_samples, "") for a usable file, (0, reason) for a bad one."""
    try:
        return len(load_audio(path)), ""
    except AudioError as error:
        return 0, str(error).split(": ", 1)[-1]


def scan_audio(audio_dir: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
               valid_percent: float = 0.01, seed: int = 0, jobs: int | None = None,
               strict: bool = False) -> ScanResult:
    """Decode every file under `audio_dir` and split the good ones into train/valid.

    Each file goes to valid with probability `valid_percent`, decided by a
    generator seeded with `seed` in sorted path order, so a seed fixes the split.
    With `strict`, the first bad file raises AudioError instead of being rejected.
    """
    audio_dir = Path(audio_dir).resolve()
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"{audio_dir}: not a directory")
    relpaths = find_audio(audio_dir, extensions)
    if not relpaths:
        raise AudioError(f"{audio_dir}: no files with extension {', '.join(extensions)}")
    jobs = jobs or min(len(relpaths), os.cpu_count() or 1)
    full = [str(audio_dir / r) for r in relpaths]
    with ProcessPoolExecutor(jobs) if jobs > 1 else _Serial() as pool:
        probed = list(tqdm(pool.map(_probe, full, chunksize=8), total=len(full),
                           desc="scan audio", unit="file"))
    rng = random.Random(seed)
    result = ScanResult([], [], [])
    for rel, (size, reason) in zip(relpaths, probed):
        if reason:
            if strict:
                raise AudioError(f"{audio_dir / rel}: {reason} (rerun without --strict to skip it)")
            result.rejected.append((rel, reason))
            continue
        split = result.valid if rng.random() < valid_percent else result.train
        split.append((rel, size))
    return result


def write_scan(result: ScanResult, audio_dir: str | Path, out_dir: str | Path) -> None:
    """Write train.tsv, valid.tsv and rejected.tsv into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir / "train.tsv", audio_dir, result.train)
    write_manifest(out_dir / "valid.tsv", audio_dir, result.valid)
    lines = "".join(f"{rel}\t{reason}\n" for rel, reason in result.rejected)
    (out_dir / "rejected.tsv").write_text("path\treason\n" + lines, encoding="utf-8")


class _Serial:
    """Stand-in for a process pool when one job is asked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)

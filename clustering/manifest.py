"""fairseq-format manifests: first line the audio root, then `relpath<TAB>num_samples`.

`read_manifest` validates every line and names the line number of anything
malformed; `shard_range` is the one definition of which lines a sharded job
owns (fairseq's rounding).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ManifestError(ValueError):
    """A malformed manifest; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Manifest:
    """An audio root and its utterances, in file order.

    `paths[i]` is relative to `root`; `sizes[i]` is its length in 16 kHz samples.
    """

    root: Path
    paths: tuple[str, ...]
    sizes: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def audio_path(self, index: int) -> Path:
        return self.root / self.paths[index]

    def utterance_id(self, index: int) -> str:
        """Path without its extension, as alignments and transcripts name utterances."""
        return os.path.splitext(self.paths[index])[0]

    def shard(self, rank: int, nshard: int) -> range:
        return shard_range(len(self), rank, nshard)

    def subset(self, indices) -> "Manifest":
        """The utterances at `indices`, in that order."""
        return Manifest(self.root, tuple(self.paths[i] for i in indices), tuple(self.sizes[i] for i in indices))


def shard_range(num_lines: int, rank: int, nshard: int) -> range:
    """Lines `round(N/nshard*rank)` to `round(N/nshard*(rank+1))`, as fairseq shards them."""
    if nshard < 1 or not 0 <= rank < nshard:
        raise ValueError(f"need 0 <= rank < nshard, got rank={rank} nshard={nshard}")
    start = round(num_lines / nshard * rank)
    end = round(num_lines / nshard * (rank + 1))
    return range(start, end)


def read_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found; make one with `hubert manifest AUDIO_DIR OUT_DIR`") from None
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}:1: first line must be the audio root directory")
    root = Path(lines[0].strip())
    paths, sizes = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0] or not fields[1].strip().isdigit():
            raise ManifestError(
                f"{path}:{number}: expected 'relpath<TAB>num_samples', got {line!r}; "
                "fix or remove this line")
        size = int(fields[1])
        if size <= 0:
            raise ManifestError(f"{path}:{number}: {fields[0]} has {size} samples; remove this line")
        paths.append(fields[0])
        sizes.append(size)
    return Manifest(root, tuple(paths), tuple(sizes))


def write_manifest(path: str | Path, root: str | Path, entries: list[tuple[str, int]]) -> None:
    """Write `entries` (relpath, num_samples) under `root` atomically."""
    path = Path(path)
    text = str(Path(root).resolve()) + "\n" + "".join(f"{rel}\t{n}\n" for rel, n in entries)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

"""fairseq-format manifests: first line the audio root, then `relpath<TAB>num_samples`.

`read_manifest` validates every line and names the line number of anything
malformed; `shard_range` is the one definition of which lines a sharded job
owns (fairseq's rounding).
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_text
from .audio import MOVED_AUDIO_FIX


class ManifestError(ValueError):
    """A malformed manifest; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Manifest:
    """An audio root and its utterances, in file order.

    `paths[i]` is relative to `root`; `sizes[i]` is its length in 16 kHz samples;
    `lines[i]` is the line of the manifest file that lists it (empty: not read from a file).
    """

    root: Path
    paths: tuple[str, ...]
    sizes: tuple[int, ...]
    lines: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def audio_path(self, index: int) -> Path:
        return self.root / self.paths[index]

    def utterance_id(self, index: int) -> str:
        """Path without its extension, as alignments and transcripts name utterances."""
        return os.path.splitext(self.paths[index])[0]

    def line_number(self, index: int) -> int:
        """Line of the manifest file listing utterance `index` (line 1 is the root)."""
        return self.lines[index] if self.lines else index + 2

    def shard(self, rank: int, nshard: int) -> range:
        return shard_range(len(self), rank, nshard)

    def subset(self, indices) -> "Manifest":
        """The utterances at `indices`, in that order."""
        indices = list(indices)
        return Manifest(self.root, tuple(self.paths[i] for i in indices), tuple(self.sizes[i] for i in indices),
                        tuple(self.line_number(i) for i in indices))


def shard_range(num_lines: int, rank: int, nshard: int) -> range:
    """Lines `round(N/nshard*rank)` to `round(N/nshard*(rank+1))`, as fairseq shards them."""
    if nshard < 1 or not 0 <= rank < nshard:
        raise ValueError(f"need 0 <= rank < nshard, got rank={rank} nshard={nshard}")
    start = round(num_lines / nshard * rank)
    end = round(num_lines / nshard * (rank + 1))
    return range(start, end)


def read_manifest(path: str | Path) -> Manifest:
    """Parse and validate a manifest file."""
    lines = _manifest_lines(Path(path))
    root = Path(lines[0].strip())
    paths, sizes, numbers = [], [], []
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
        numbers.append(number)
    return Manifest(root, tuple(paths), tuple(sizes), tuple(numbers))


_UTTERANCE_LINE = re.compile(r"[^\t]+\t\s*\d+\s*")


def _manifest_lines(path: Path) -> list[str]:
    """Lines of the manifest at `path`, the first checked to be an audio root, not an utterance."""
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder; give the manifest file in it (e.g. {path / 'train.tsv'})")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is dropped
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found; make one with `hubert manifest AUDIO_DIR OUT_DIR`") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text, so not a manifest; give the .tsv that "
                            "`hubert manifest` wrote") from None
    check_root_line(path, lines[0] if lines else "")
    return lines


def check_audio_present(manifest: Manifest, source: str | Path) -> None:
    """ManifestError, before any work, when the audio root of `manifest` (read from `source`) or its
    first utterance is missing: the audio moved after the manifest was written."""
    if not manifest.root.is_dir():
        raise ManifestError(f"{source}:1: audio folder {manifest.root} no longer exists (the audio moved after "
                            "this manifest was written); write its new folder on line 1, or rescan the audio "
                            "with `hubert manifest`")
    if len(manifest) and not manifest.audio_path(0).is_file():
        raise ManifestError(f"{source}:{manifest.line_number(0)}: {manifest.audio_path(0)} not found; "
                            f"{MOVED_AUDIO_FIX}")


def check_root_line(path: str | Path, line: str) -> Path:
    """The audio root a manifest's first line names; ManifestError when it is empty or an utterance."""
    if not line.strip():
        raise ManifestError(f"{path}:1: first line must be the audio root folder; add it")
    if _UTTERANCE_LINE.fullmatch(line):
        raise ManifestError(f"{path}:1: first line must be the audio root folder, got {line!r}; "
                            "add it (the folder the relative paths start from) above this line")
    return Path(line.strip())


def check_valid_percent(valid_percent: float) -> None:
    """ValueError unless 0 <= valid_percent < 1: it is the fraction of utterances put in valid."""
    if not 0 <= valid_percent < 1:
        raise ValueError(f"--valid-percent must be in [0, 1), got {valid_percent:g}: it is a fraction "
                         "(0.01 puts 1% of the utterances in valid.tsv)")


def ensure_valid(in_valid: list[bool], valid_percent: float, seed: int) -> list[bool]:
    """`in_valid` (one flag per good utterance), with one utterance chosen by `seed` moved to
    valid when `valid_percent` > 0 picked none of two or more: a tiny corpus still has a valid split."""
    if valid_percent <= 0 or len(in_valid) < 2 or any(in_valid):
        return in_valid
    chosen = random.Random(seed).randrange(len(in_valid))
    return [i == chosen for i in range(len(in_valid))]


# A manifest line is `relpath<TAB>samples` and lines are split as str.splitlines() splits them.
SEPARATORS = "\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def unlistable(relpath: str) -> str:
    """Why `relpath` cannot be written on a manifest line ("" when it can): a tab or a line break in it."""
    found = sorted({repr(c)[1:-1] for c in relpath if c in SEPARATORS})
    if not found:
        return ""
    return (f"its name holds {', '.join(found)}, which a manifest line cannot hold (tab-separated, one file "
            "per line); rename it")


def write_manifest(path: str | Path, root: str | Path, entries: list[tuple[str, int]]) -> None:
    """Write `entries` (relpath, num_samples) under `root` atomically; ManifestError, with nothing
    written, for a path that a manifest line cannot hold (see `unlistable`)."""
    path = Path(path)
    for rel in [str(Path(root).resolve())] + [rel for rel, _ in entries]:
        if unlistable(rel):
            raise ManifestError(f"{path}: cannot list {rel!r}: {unlistable(rel)}")
    text = str(Path(root).resolve()) + "\n" + "".join(f"{rel}\t{n}\n" for rel, n in entries)
    write_text(path, text)

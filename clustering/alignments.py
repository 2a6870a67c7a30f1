"""Phone alignments as 100 Hz frame labels, from the formats users already have.

- fairseq frame-level tsv: `uid<TAB>p1,p2,...`, one phone per 10 ms frame.
- Praat TextGrid (what the Montreal Forced Aligner writes): the tier named
  "phones" (or the last interval tier), one file per utterance.
- HTK-style .lab: `end phone` or `start end phone` per line; times in seconds,
  or in HTK's 100 ns units when any time is an integer above 10^5.
For file-per-utterance formats, `<dir>/<uid>.<ext>` is looked up first, then
`<dir>/<basename of uid>.<ext>`. Empty phone names are silence ("sil").
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .audio import ALIGNMENT_RATE

SILENCE = "sil"
Segments = list[tuple[float, float, str]]  # (start s, end s, phone)


def segments_to_frames(segments: Segments, rate: int = ALIGNMENT_RATE) -> list[str]:
    """Phone of each frame (at its centre) covered by `segments`."""
    if not segments:
        return []
    num = int(round(segments[-1][1] * rate))
    centres = (np.arange(num) + 0.5) / rate
    ends = np.array([end for _, end, _ in segments])
    which = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    return [segments[i][2] or SILENCE for i in which]


def read_tsv_alignments(path: str | Path) -> dict[str, list[str]]:
    """fairseq frame-level alignments: {uid: [phone per 10 ms frame]}."""
    out = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        uid, sep, phones = line.partition("\t")
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'uid<TAB>p1,p2,...'")
        out[uid] = phones.split(",")
    return out


def read_textgrid(path: str | Path, tier: str = "phones") -> Segments:
    """Intervals of the `tier` tier (else the last interval tier) of a long-format TextGrid."""
    text = Path(path).read_text(encoding="utf-8-sig")
    tiers = re.split(r"\n\s*item \[\d+\]:", text)[1:]
    if not tiers:
        raise ValueError(f"{path}: no tiers found (is this a long-format TextGrid?)")
    chosen = next((t for t in tiers if re.search(rf'name = "{re.escape(tier)}"', t)), tiers[-1])
    intervals = re.findall(r'xmin = ([\d.eE+-]+)\s*xmax = ([\d.eE+-]+)\s*text = "(.*)"', chosen)
    return [(float(a), float(b), label.strip()) for a, b, label in intervals]


def read_lab(path: str | Path) -> Segments:
    """HTK-style label file: `end phone` or `start end phone` per line."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    numbers = [float(v) for row in rows for v in row[:-1]]
    scale = 1e-7 if any(v > 1e5 and float(v).is_integer() for v in numbers) else 1.0
    segments, start = [], 0.0
    for row in rows:
        if len(row) == 3:
            start, end = float(row[0]) * scale, float(row[1]) * scale
        elif len(row) == 2:
            end = float(row[0]) * scale
        else:
            raise ValueError(f"{path}: expected 'end phone' or 'start end phone', got {' '.join(row)!r}")
        segments.append((start, end, row[-1]))
        start = end
    return segments


def load_alignments(source: str | Path, uids: list[str], fmt: str | None = None) -> dict[str, list[str]]:
    """Frame labels for whichever of `uids` the alignments cover (missing ones are absent)."""
    source = Path(source)
    fmt = fmt or ("tsv" if source.is_file() else _guess_dir_format(source))
    if fmt == "tsv":
        return read_tsv_alignments(source)
    reader = {"textgrid": read_textgrid, "lab": read_lab}.get(fmt)
    if reader is None:
        raise ValueError(f"unknown alignment format {fmt!r}; use tsv, textgrid or lab")
    ext = ".TextGrid" if fmt == "textgrid" else ".lab"
    out = {}
    for uid in uids:
        for candidate in (source / f"{uid}{ext}", source / f"{Path(uid).name}{ext}"):
            if candidate.exists():
                out[uid] = segments_to_frames(reader(candidate))
                break
    return out


def _guess_dir_format(directory: Path) -> str:
    if next(directory.rglob("*.TextGrid"), None):
        return "textgrid"
    if next(directory.rglob("*.lab"), None):
        return "lab"
    raise ValueError(f"{directory}: no .TextGrid or .lab files; pass --alignment-format")

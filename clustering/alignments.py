"""Phone alignments as 100 Hz frame labels, from the formats users already have.

- fairseq frame-level tsv: `uid<TAB>p1,p2,...`, one phone per 10 ms frame, one file for all.
- Praat TextGrid (what the Montreal Forced Aligner writes), long or short text format:
  the tier named "phones" (or the last interval tier).
- HTK .lab: `start end phone [score ...]` per line, or `end phone`; times in HTK's 100 ns
  units when every time is written as an integer and one reaches 10^5, else in seconds.
- Xwaves .lab (festival voice databases, CMU ARCTIC): an optional header ended by a line
  holding just `#`, then `end_time colour phone` per line.
Apart from the tsv, one file per utterance: `<dir>/<uid>.<ext>` is looked up first, then
`<dir>/<basename of uid>.<ext>`. The format of each file is read from its content; a
header-less 3-column .lab is HTK or Xwaves by its numbers (see `lab_format`). Empty phone
names are silence ("sil"). Errors name the file and the line.
"""
from __future__ import annotations

import bisect
import re
from pathlib import Path

import numpy as np

from .audio import ALIGNMENT_RATE
from .text_files import UTF16_MARKS, decode_text

SILENCE = "sil"
FORMATS = ("tsv", "textgrid", "htk", "xwaves")  # "lab" as well: HTK or Xwaves, read from the content
EXTENSIONS = {"textgrid": (".TextGrid", ".textgrid"), "htk": (".lab",), "xwaves": (".lab",), "lab": (".lab",)}
HTK_UNIT = 1e-7  # seconds per HTK time unit (100 ns)
HTK_UNITS_FROM = 1e5  # an all-integer .lab whose largest time reaches this (10 ms) counts in HTK units
Segments = list[tuple[float, float, str]]  # (start s, end s, phone)
Row = tuple[int, list[str]]  # (line number, whitespace-separated fields)


def segments_to_frames(segments: Segments, rate: int = ALIGNMENT_RATE) -> list[str]:
    """Phone of each frame (at its centre) covered by `segments`."""
    if not segments:
        return []
    num = int(round(segments[-1][1] * rate))
    centres = (np.arange(num) + 0.5) / rate
    ends = np.array([end for _, end, _ in segments])
    which = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    return [segments[i][2] or SILENCE for i in which]


def _read_text(path: str | Path) -> str:
    """A text file as str; Praat writes UTF-16 (with a byte-order mark) when a label is not ASCII."""
    data = Path(path).read_bytes()
    if data[:2] in UTF16_MARKS:
        return data.decode("utf-16")
    return decode_text(data, path)


def read_tsv_alignments(path: str | Path) -> dict[str, list[str]]:
    """fairseq frame-level alignments: {uid: [phone per 10 ms frame]}."""
    out = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        uid, sep, phones = line.partition("\t")
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'uid<TAB>p1,p2,...'")
        out[uid] = phones.split(",")
    return out


# Praat text files are a sequence of strings, numbers and <flags>; the long format adds
# `name =` labels and `[n]` indices, which carry nothing and are skipped.
_PRAAT_TOKEN = re.compile(r'"((?:[^"]|"")*)"|<(exists|absent)>|\[\s*\d*\s*\]'
                          r'|(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])')


class _PraatTokens:
    """The tokens of a Praat text file in order, each with its line number, read one at a time."""

    def __init__(self, path: str | Path, text: str):
        self.path, self.position = path, 0
        newlines = [m.start() for m in re.finditer("\n", text)]
        self.tokens = []
        for match in _PRAAT_TOKEN.finditer(text):
            line = bisect.bisect(newlines, match.start()) + 1
            string, flag, number = match.groups()
            if string is not None:
                self.tokens.append(("a string", string.replace('""', '"'), line))
            elif flag is not None:
                self.tokens.append(("a flag", flag, line))
            elif number is not None:
                self.tokens.append(("a number", float(number), line))

    def take(self, kind: str, what: str):
        """The next token, which must be of `kind` ("a string", "a number", "a flag")."""
        if self.position >= len(self.tokens):
            raise ValueError(f"{self.path}: the file ends where {what} should be; is it cut short?")
        found, value, line = self.tokens[self.position]
        self.position += 1
        if found != kind:
            raise ValueError(f"{self.path}:{line}: expected {kind} ({what}), found {value!r}")
        return value

    def skip(self, kind: str, *whats: str) -> None:
        """Read and drop one token of `kind` for each of `whats`."""
        for what in whats:
            self.take(kind, what)

    def line(self) -> int:
        """Line of the token read last."""
        return self.tokens[self.position - 1][2]


def read_textgrid(path: str | Path, tier: str = "phones") -> Segments:
    """Intervals of the `tier` tier (else the last interval tier) of a long- or short-format TextGrid."""
    tokens = _PraatTokens(path, _read_text(path))
    file_type = tokens.take("a string", "the file type")
    if not file_type.startswith("ooTextFile") or tokens.take("a string", "the object class") != "TextGrid":
        raise ValueError(f"{path}:{tokens.line()}: not a Praat TextGrid text file")
    tokens.skip("a number", "the grid's xmin", "the grid's xmax")
    if tokens.take("a flag", "<exists>") == "absent":
        raise ValueError(f"{path}: the TextGrid has no tiers")
    interval_tiers = {}
    for index in range(int(tokens.take("a number", "the number of tiers"))):
        kind, name, intervals = _read_tier(tokens, f"tier {index + 1}")
        if kind == "IntervalTier":
            interval_tiers[name] = intervals
    if not interval_tiers:
        raise ValueError(f"{path}: no interval tier (phones) in the TextGrid")
    return interval_tiers.get(tier, list(interval_tiers.values())[-1])


def _read_tier(tokens: _PraatTokens, where: str) -> tuple[str, str, Segments]:
    """(class, name, intervals) of the next tier; a point tier's points are read and dropped."""
    kind = tokens.take("a string", f"the class of {where}")
    name = tokens.take("a string", f"the name of {where}")
    tokens.skip("a number", f"the xmin of {where}", f"the xmax of {where}")
    count = int(tokens.take("a number", f"the size of {where}"))
    if kind == "TextTier":
        for point in range(count):
            tokens.skip("a number", f"the time of point {point + 1} of {where}")
            tokens.skip("a string", f"the mark of point {point + 1} of {where}")
        return kind, name, []
    if kind != "IntervalTier":
        raise ValueError(f"{tokens.path}:{tokens.line()}: unknown tier class {kind!r} ({where})")
    intervals = []
    for interval in range(count):
        what = f"interval {interval + 1} of {where} ({name!r})"
        start, end = tokens.take("a number", f"the xmin of {what}"), tokens.take("a number", f"the xmax of {what}")
        intervals.append((start, end, tokens.take("a string", f"the text of {what}").strip()))
    return kind, name, intervals


def _lab_rows(path: str | Path) -> tuple[bool, list[Row]]:
    """(has an Xwaves header, the non-empty rows after it) of a .lab file."""
    lines = _read_text(path).splitlines()
    marker = next((i for i, line in enumerate(lines) if line.strip() == "#"), None)
    first = 0 if marker is None else marker + 1
    rows = [(number, line.split()) for number, line in enumerate(lines[first:], start=first + 1) if line.strip()]
    return marker is not None, rows


def _number(path: str | Path, line: int, token: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{path}:{line}: {what} {token!r} is not a number") from None


def _is_integer(token: str) -> bool:
    return re.fullmatch(r"[-+]?\d+", token) is not None


def _append(segments: Segments, path: str | Path, line: int, start: float, end: float, phone: str) -> None:
    """Add one segment, refusing one that ends before it starts or before the previous one ends."""
    if end < start or (segments and end < segments[-1][1]):
        raise ValueError(f"{path}:{line}: segment {phone!r} ends at {end:g} s, before it starts ({start:g} s) "
                         "or before the previous segment ends; are the columns in this format's order?")
    segments.append((start, end, phone))


def _htk_fields(fields: list[str]) -> tuple[list[str], str]:
    """(time tokens, phone) of an HTK row: `start end phone [score ...]` or `end phone`."""
    *times, phone = fields[:3] if len(fields) > 2 else fields
    return times, phone


def read_htk_lab(path: str | Path) -> Segments:
    """HTK label file: `start end phone [score ...]` or `end phone` per line."""
    _, rows = _lab_rows(path)
    all_times = [token for _, fields in rows for token in _htk_fields(fields)[0]]
    in_units = all(_is_integer(t) for t in all_times) and max(map(float, all_times), default=0) >= HTK_UNITS_FROM
    scale = HTK_UNIT if in_units else 1.0
    segments, start = [], 0.0
    for line, fields in rows:
        if len(fields) < 2:
            raise ValueError(f"{path}:{line}: expected 'start end phone' or 'end phone', got {' '.join(fields)!r}")
        times, phone = _htk_fields(fields)
        if len(times) == 2:
            start = _number(path, line, times[0], "start time") * scale
        end = _number(path, line, times[-1], "end time") * scale
        _append(segments, path, line, start, end, phone)
        start = end
    return segments


def read_xwaves_lab(path: str | Path) -> Segments:
    """Xwaves/festival label file: optional header up to a `#` line, then `end_time colour phone`."""
    _, rows = _lab_rows(path)
    segments, start = [], 0.0
    for line, fields in rows:
        if len(fields) < 2:
            raise ValueError(f"{path}:{line}: expected 'end_time colour phone', got {' '.join(fields)!r}")
        end = _number(path, line, fields[0], "end time")
        _number(path, line, fields[1], "colour")
        _append(segments, path, line, start, end, fields[2] if len(fields) > 2 else "")
        start = end
    return segments


def lab_format(path: str | Path) -> str:
    """"htk" or "xwaves" for a .lab file, from its content.

    A `#` header line means Xwaves; rows of other than three fields mean HTK. Three-column rows
    are HTK `start end phone` when each row starts where the previous one ended, or when only
    the HTK reading fits (segments in order, none overlapping); Xwaves `end colour phone` when
    only that reading fits (end times increasing, integer colours). Otherwise ValueError.
    """
    header, rows = _lab_rows(path)
    if header:
        return "xwaves"
    if not rows or any(len(fields) != 3 for _, fields in rows):
        return "htk"
    try:
        first = [float(fields[0]) for _, fields in rows]
        second = [float(fields[1]) for _, fields in rows]
    except ValueError:
        return "htk"  # its reader names the line that is not a number
    htk = all(a <= b for a, b in zip(first, second)) and all(a >= b for a, b in zip(first[1:], second))
    if htk and len(rows) > 1 and first[1:] == second[:-1]:
        return "htk"
    xwaves = all(a <= b for a, b in zip(first, first[1:])) and all(_is_integer(f[1]) for _, f in rows)
    if htk != xwaves:
        return "htk" if htk else "xwaves"
    raise ValueError(f"{path}:{rows[0][0]}: cannot tell HTK 'start end phone' from Xwaves 'end_time colour "
                     f"phone' ({'both readings fit' if htk else 'neither reading fits'}); "
                     "pass --alignment-format htk or --alignment-format xwaves")


def read_lab(path: str | Path) -> Segments:
    """An HTK or Xwaves .lab file, which one read from its content (`lab_format`)."""
    return read_htk_lab(path) if lab_format(path) == "htk" else read_xwaves_lab(path)


READERS = {"textgrid": read_textgrid, "htk": read_htk_lab, "xwaves": read_xwaves_lab, "lab": read_lab}


def detect_format(path: str | Path) -> str:
    """"tsv", "textgrid", "htk" or "xwaves", from a file's content rather than its name."""
    text = _read_text(path)
    if re.match(r'\s*File type\s*=\s*"ooTextFile', text):
        return "textgrid"
    if _is_tsv(text):
        return "tsv"
    return lab_format(path)


def _is_tsv(text: str) -> bool:
    """One tab on every line and commas between phones: `uid<TAB>p1,p2,...`."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and all(line.count("\t") == 1 for line in lines) and any("," in line for line in lines)


def read_segments(path: str | Path, fmt: str | None = None) -> Segments:
    """One utterance's segments; its format detected from the content unless `fmt` says it."""
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise ValueError(f"{path}: a {fmt} file holds many utterances, not one; pass it as --alignments itself")
    return READERS[fmt](path)


def load_alignments(source: str | Path, uids: list[str], fmt: str | None = None) -> dict[str, list[str]]:
    """Frame labels for whichever of `uids` the alignments cover (missing ones are absent).

    `source` is a fairseq tsv or a folder of per-utterance files; `fmt` (one of FORMATS, or
    "lab" for HTK-or-Xwaves) overrides what the content says, for files that do not say.
    """
    source = Path(source)
    if fmt is not None and fmt not in FORMATS + ("lab",):
        raise ValueError(f"unknown alignment format {fmt!r}; use {', '.join(FORMATS)} or lab")
    if source.is_file():
        if fmt == "tsv" or (fmt is None and _is_tsv(_read_text(source))):
            return read_tsv_alignments(source)
        raise ValueError(f"{source}: not a fairseq frame-level tsv ('uid<TAB>p1,p2,...'); TextGrid and .lab "
                         "alignments are one file per utterance: pass their folder as --alignments")
    if fmt == "tsv":
        raise ValueError(f"{source}: a folder, but --alignment-format tsv expects a file")
    extensions = EXTENSIONS.get(fmt, (".TextGrid", ".textgrid", ".lab"))
    out = {}
    for uid in uids:
        path = _utterance_file(source, uid, extensions)
        if path is not None:
            out[uid] = segments_to_frames(read_segments(path, fmt))
    if not out and not any(next(source.rglob(f"*{ext}"), None) for ext in extensions):
        raise ValueError(f"{source}: no {' / '.join(extensions)} files; pass --alignment-format "
                         "or the right folder")
    return out


def _utterance_file(directory: Path, uid: str, extensions: tuple[str, ...]) -> Path | None:
    """`<directory>/<uid><ext>`, else `<directory>/<basename of uid><ext>`, for the first ext that exists."""
    for stem in (uid, Path(uid).name):
        for ext in extensions:
            if (directory / f"{stem}{ext}").exists():
                return directory / f"{stem}{ext}"
    return None

"""ABX items: the triphones of the report split, and the `.item` file fastabx reads.

An item is one occurrence of a phone with the phone before and the phone after it, spanning
the three (from the previous phone's start to the next phone's end), as the ZeroSpeech 2021 /
Libri-light triphone item files do. Phones are the runs of equal labels of the 100 Hz
alignments (two identical phones in a row are one run); triphones with silence ("sil") or
an unknown phone ("spn") in any of the three places are left out, as are those ending after
the last frame of 50 Hz model features or of 100 Hz MFCCs, so every row scores the same items.

The `.item` file (`#file onset offset #phone prev-phone next-phone speaker`, times in
seconds, one item per line) names each utterance by its manifest id (path without extension):
fastabx finds features saved as `<root>/<id>.pt` at the frequency you give it.
"""
from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .audio import ALIGNMENT_RATE, FRAME_RATE, MFCC_FRAMES, MFCC_RATE, num_model_frames
from .manifest import Manifest

LEFT_OUT = frozenset({"sil", "spn", ""})  # no item has these as its phone or its context
UNKNOWN_SPEAKER = "all"  # the speaker of every item when speakers are not known
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"


@dataclass(frozen=True)
class Item:
    utterance: int  # index in the report manifest
    uid: str
    start: int  # first 100 Hz alignment frame of the triphone (the previous phone's first)
    end: int  # one past its last alignment frame (the next phone's last)
    phone: str
    prev: str
    next: str
    speaker: str


def phone_runs(frames: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, phone) of each run of equal 100 Hz labels."""
    runs, start = [], 0
    for k in range(1, len(frames) + 1):
        if k == len(frames) or frames[k] != frames[start]:
            runs.append((start, k, frames[start]))
            start = k
    return runs


def usable_frames(num_samples: int) -> int:
    """Alignment frames covered by both 50 Hz model frames and 100 Hz MFCC frames of an utterance."""
    seconds = min(Fraction(num_model_frames(num_samples), FRAME_RATE),
                  Fraction(num_model_frames(num_samples, MFCC_FRAMES), MFCC_RATE))
    return math.floor(seconds * ALIGNMENT_RATE)


def triphone_items(manifest: Manifest, alignments: dict[str, list[str]],
                   speakers: dict[str, str] | None) -> list[Item]:
    """Every triphone item of the aligned utterances of `manifest`, in manifest order."""
    items = []
    for index in range(len(manifest)):
        uid = manifest.utterance_id(index)
        if uid not in alignments:
            continue
        speaker = speakers.get(uid, UNKNOWN_SPEAKER) if speakers else UNKNOWN_SPEAKER
        limit = usable_frames(manifest.sizes[index])
        runs = phone_runs(alignments[uid])
        for before, (_, _, phone), after in zip(runs, runs[1:], runs[2:]):
            if LEFT_OUT.isdisjoint((before[2], phone, after[2])) and after[1] <= limit:
                items.append(Item(index, uid, before[0], after[1], phone, before[2], after[2], speaker))
    return items


def subsample(items: list[Item], max_items: int, seed: int) -> list[Item]:
    """At most `max_items` items of each (phone, context, speaker) group, the same ones whatever
    the order of the utterances: each item's rank is a hash of (seed, utterance id, start)."""
    groups: dict[tuple, list[Item]] = {}
    for item in items:
        groups.setdefault((item.phone, item.prev, item.next, item.speaker), []).append(item)
    kept = []
    for group in groups.values():
        group.sort(key=lambda it: (zlib.crc32(f"{seed}:{it.uid}:{it.start}".encode()), it.uid, it.start))
        kept += group[:max_items]
    return sorted(kept, key=lambda it: (it.uid, it.start))


def frame_span(item: Item, frame_rate: float) -> tuple[int, int]:
    """[first, stop) feature frames of `item` at `frame_rate`: the frames whose centre,
    (k + 0.5) / frame_rate seconds, lies within [onset, offset] (fastabx's slicing)."""
    rate = Fraction(str(frame_rate))
    onset, offset = Fraction(item.start, ALIGNMENT_RATE), Fraction(item.end, ALIGNMENT_RATE)
    return math.ceil(onset * rate - Fraction(1, 2)), math.floor(offset * rate - Fraction(1, 2)) + 1


def write_item_file(path: str | Path, items: list[Item]) -> Path:
    """The items as a `.item` file (see the module docstring); spaces in names become '_'."""
    def token(text: str) -> str:
        return re.sub(r"\s+", "_", text) or "_"

    lines = [ITEM_HEADER] + [
        f"{token(it.uid)} {it.start / ALIGNMENT_RATE:.2f} {it.end / ALIGNMENT_RATE:.2f} {token(it.phone)} "
        f"{token(it.prev)} {token(it.next)} {token(it.speaker)}" for it in items]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)

"""Who speaks each utterance, for ABX within and across speaker.

Three sources, by what a corpus has:
- a speakers file: `uid<TAB>speaker` per line (a first line `uid<TAB>speaker` is a header); the
  built-in corpus writes one (`speakers.tsv`: each utterance's espeak voice);
- a folder level: the N-th folder of each utterance's path names its speaker (LibriSpeech's
  `SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`: level 1);
- neither: speakers unknown (ABX within pools every speaker, and there is no across figure).
"""
from __future__ import annotations

from pathlib import Path

from .path_checks import input_file


def read_speakers(path: str | Path) -> dict[str, str]:
    """{uid: speaker} from a `uid<TAB>speaker` file."""
    path = input_file(path, "speakers file")
    out = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or (number == 1 and line.split("\t") == ["uid", "speaker"]):
            continue
        uid, sep, speaker = line.partition("\t")
        if not sep or not speaker.strip():
            raise ValueError(f"{path}:{number}: expected 'uid<TAB>speaker', got {line!r}")
        out[uid] = speaker.strip()
    return out


def folder_speakers(uids: list[str], level: int) -> dict[str, str]:
    """{uid: its `level`-th folder (1 = the first)}; ValueError naming an utterance with fewer folders."""
    out = {}
    for uid in uids:
        folders = Path(uid).parts[:-1]
        if len(folders) < level:
            raise ValueError(f"utterance {uid}: no folder at level {level} to name its speaker; set the speaker "
                             "folder level to one its path has, or give a uid<TAB>speaker file")
        out[uid] = folders[level - 1]
    return out


def find_speakers(uids: list[str], path: str | Path | None = None, folder_level: int = 0) -> dict[str, str] | None:
    """Speakers of `uids` from a file (`path`), else a folder level, else None (unknown)."""
    if path:
        return read_speakers(path)
    if folder_level:
        return folder_speakers(uids, folder_level)
    return None

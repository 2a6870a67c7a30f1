"""Scan a folder of audio into train/valid manifests, rejecting bad files."""
from __future__ import annotations

import contextlib
import errno
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .audio import AUDIO_EXTENSIONS, AudioError, load_audio, short_audio_reason
from .manifest import check_valid_percent, ensure_valid, unlistable, write_manifest
from .manifest_arrays import write_manifest_arrays
from .path_checks import input_folder, output_folder
from .scan_journal import ScanJournal, file_stamp


REJECTED = "rejected.tsv"  # files left out of the manifests, with the reason for each


@dataclass
class ScanResult:
    train: list[tuple[str, int]]
    valid: list[tuple[str, int]]
    rejected: list[tuple[str, str]]  # (relpath, reason)

    def summary(self) -> str:
        return (f"{len(self.train)} train, {len(self.valid)} valid, "
                f"{len(self.rejected)} rejected")


def find_audio(audio_dir: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """Relative paths of audio files under `audio_dir`, sorted, so scans are deterministic."""
    return walk_audio(audio_dir, extensions)[0]


def walk_audio(audio_dir: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS
               ) -> tuple[list[str], list[tuple[str, str]]]:
    """(sorted relative paths of audio files, [(relpath, reason)] of links and folders skipped).

    Links to folders are followed, each real folder walked once: the folders really
    under `audio_dir` first, then link targets in sorted order. A link back to a folder
    being walked (a loop), a second link to a folder already walked, a dangling link
    and an unreadable folder are skipped with their reason, so the walk always ends.
    """
    audio_dir = Path(audio_dir)
    suffixes = {"." + e.lower().lstrip(".") for e in extensions}
    walked = {os.path.realpath(audio_dir): ""}  # real path -> relpath it was walked as
    found, rejected, tops = [], [], [""]  # tops: the audio folder, then each link followed
    while tops:
        files, links, skipped = _walk_real_folders(audio_dir, tops.pop(0), walked)
        found += [rel for rel in files if os.path.splitext(rel)[1].lower() in suffixes]
        rejected += skipped
        for rel in sorted(links):
            reason = _link_problem(audio_dir, rel, walked)
            if reason:
                rejected.append((rel, reason))
            else:
                walked[os.path.realpath(audio_dir / rel)] = rel
                tops.append(rel)
    return sorted(found), sorted(rejected)


def _walk_real_folders(audio_dir: Path, top: str, walked: dict[str, str]
                       ) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """(files, links to folders or nowhere, skipped folders) under `audio_dir / top`, links not followed.

    Paths are relative to `audio_dir`; every real folder walked is recorded in `walked`.
    """
    files, links, skipped, pending = [], [], [], [top]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(audio_dir / folder))
        except OSError as error:
            skipped.append((folder, f"cannot read folder ({error.strerror}); fix its permissions"))
            continue
        for entry in entries:
            rel = os.path.join(folder, entry.name) if folder else entry.name
            if entry.is_symlink() and not os.path.isfile(entry.path):
                links.append(rel)  # to a folder, or to nothing: judged by _link_problem
            elif entry.is_dir():
                real = os.path.realpath(entry.path)
                if real in walked:  # reached before through a link to it
                    skipped.append((rel, _repeat(walked[real])))
                    continue
                walked[real] = rel
                pending.append(rel)
            elif entry.is_file():
                files.append(rel)
    return files, links, skipped


def _link_problem(audio_dir: Path, rel: str, walked: dict[str, str]) -> str:
    """Why the link `rel` is not followed ("" when it should be): dangling, a loop, or a repeat."""
    link = audio_dir / rel
    try:
        os.stat(link)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "link loop: the links lead back to each other; fix or remove the link"
        return f"dangling link to {os.readlink(link)}; fix or remove the link"
    target = os.path.realpath(link)
    if target not in walked:
        return ""
    if os.path.commonpath([target, os.path.realpath(link.parent)]) == target:
        return f"link loop: points back to {_name(walked[target])}, which contains it; skipped"
    return _repeat(walked[target])


def _repeat(first: str) -> str:
    return f"same folder as {_name(first)}, already scanned; skipped so no file is listed twice"


def _name(rel: str) -> str:
    return rel or "the audio folder itself"


def _probe(path: str) -> tuple[int, str]:
    """(num_samples, "") for a usable file, (0, reason) for a bad one."""
    try:
        num_samples = len(load_audio(path))
    except AudioError as error:
        return 0, " ".join(str(error).split(": ", 1)[-1].split())  # one line, for rejected.tsv
    reason = short_audio_reason(num_samples)
    return (0, reason) if reason else (num_samples, "")


def scan_audio(audio_dir: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
               valid_percent: float = 0.01, seed: int = 0, jobs: int | None = None,
               strict: bool = False, journal: str | Path | None = None) -> ScanResult:
    """Decode every file under `audio_dir` and split the good ones into train/valid.

    Each file goes to valid with probability `valid_percent`, decided by a
    generator seeded with `seed` in sorted path order, so a seed fixes the split;
    with `valid_percent` > 0 and two good files or more, valid gets at least one.
    Files shorter than MIN_AUDIO_SAMPLES are rejected, as are files whose name a manifest
    cannot hold (a tab or line break: `unlistable`), dangling links and link loops (see
    `walk_audio`). With `strict`, the first bad file raises AudioError instead of being
    rejected. With `journal` (a file), each file's result is appended there as it comes (see
    ScanJournal), and a file it already holds with the same size and modification time is not
    decoded again: a scan killed halfway resumes where it stopped, and a rescan decodes only new
    or changed files.
    """
    check_valid_percent(valid_percent)
    audio_dir = input_folder(audio_dir, "audio folder").resolve()
    relpaths, skipped = walk_audio(audio_dir, extensions)
    if not relpaths:
        raise AudioError(f"{audio_dir}: no files with extension {', '.join(extensions)}")
    badly_named = [(rel, unlistable(rel)) for rel in relpaths if unlistable(rel)]
    if badly_named and strict:
        rel, reason = badly_named[0]
        raise AudioError(f"{str(audio_dir / rel)!r}: {reason} (rerun without --strict to skip it)")
    relpaths = [rel for rel in relpaths if not unlistable(rel)]
    probed = _probe_all(audio_dir, relpaths, jobs, ScanJournal(journal) if journal else None)
    result, good = ScanResult([], [], sorted(skipped + badly_named)), []
    for rel, (size, reason) in zip(relpaths, probed):
        if reason and strict:
            raise AudioError(f"{audio_dir / rel}: {reason} (rerun without --strict to skip it)")
        if reason:
            result.rejected.append((rel, reason))
        else:
            good.append((rel, size))
    result.train, result.valid = _split(good, valid_percent, seed)
    return result


def _split(good: list[tuple[str, int]], valid_percent: float, seed: int):
    """(train, valid): each entry to valid with probability `valid_percent`, at least one of two or more."""
    rng = random.Random(seed)
    in_valid = ensure_valid([rng.random() < valid_percent for _ in good], valid_percent, seed)
    train = [entry for entry, valid in zip(good, in_valid) if not valid]
    return train, [entry for entry, valid in zip(good, in_valid) if valid]


def _probe_all(audio_dir: Path, relpaths: list[str], jobs: int | None,
               journal: ScanJournal | None) -> list[tuple[int, str]]:
    """`_probe` of every file, in `jobs` processes (default: one per core), in order; results the
    journal holds for a file of the same size and modification time are taken from it."""
    stamps = [file_stamp(audio_dir / rel) for rel in relpaths]
    known = journal.read() if journal else {}
    results = [known.get((rel, stamp)) for rel, stamp in zip(relpaths, stamps)]
    todo = [i for i, result in enumerate(results) if result is None]
    jobs = jobs or min(max(len(todo), 1), os.cpu_count() or 1)
    bar = tqdm(total=len(relpaths), initial=len(relpaths) - len(todo), desc="scan audio", unit="file")
    with ProcessPoolExecutor(jobs) if jobs > 1 else _Serial() as pool, journal or contextlib.nullcontext():
        for i, result in zip(todo, pool.map(_probe, [str(audio_dir / relpaths[i]) for i in todo], chunksize=8)):
            results[i] = result
            if journal:
                journal.add(relpaths[i], stamps[i], result)
            bar.update()
    bar.close()
    if journal:
        journal.keep_only(dict(zip(zip(relpaths, stamps), results)))
    return results


def write_scan(result: ScanResult, audio_dir: str | Path, out_dir: str | Path) -> None:
    """Write train.tsv, valid.tsv (each with its arrays, see manifest_arrays) and rejected.tsv into `out_dir`."""
    out_dir = output_folder(out_dir)
    for split, entries in (("train", result.train), ("valid", result.valid)):
        write_manifest(out_dir / f"{split}.tsv", audio_dir, entries)
        write_manifest_arrays(out_dir / f"{split}.tsv")
    shown = [(repr(rel)[1:-1] if unlistable(rel) else rel, reason) for rel, reason in result.rejected]
    lines = "".join(f"{rel}\t{reason}\n" for rel, reason in shown)  # a tab or newline in a name escaped
    (out_dir / REJECTED).write_text("path\treason\n" + lines, encoding="utf-8")


class _Serial:
    """Stand-in for a process pool when one job is asked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)

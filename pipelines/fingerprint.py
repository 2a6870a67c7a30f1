"""Content fingerprints of input folders: the same audio gives the same stage hash wherever it lives.

Each file counts by its path relative to the folder, its size, and a SHA-256 of
its first and last 16 KiB (the header, which holds format and length, and the
last samples). Reading 32 KiB per file instead of all of it keeps a rerun cheap
on hundreds of hours (about 9 MiB read per hour of LibriSpeech-like utterances;
see README, "What a rerun does"); a re-encoded, trimmed or replaced file changes
the fingerprint, an edit inside a file that keeps its length, header and end
does not. Modification times and the folder's own location do not count.

A cache in the work folder (CACHE_NAME) keeps each file's digest with its size and modification
time, so a rerun reads only the files whose size or time changed; a file changed in place that
keeps both (restored with `touch -r`) is not read again: rerun with `--from data` after one.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tqdm import tqdm

from clustering.atomic import atomic_file

EDGE_BYTES = 16 * 1024
CACHE_NAME = "fingerprints.json"  # the audio folder's digest cache, in the work folder
CACHE_VERSION = 1


def file_digest(path: Path, edge: int = EDGE_BYTES) -> str:
    """SHA-256 of size, head and tail of `path` (the whole file when it is under 2 * edge)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        digest.update(str(size).encode())
        f.seek(0)
        digest.update(f.read(edge))
        if size > edge:
            f.seek(max(edge, size - edge))
            digest.update(f.read(edge))
    return digest.hexdigest()


def folder_fingerprint(root: str | Path, relpaths: list[str], cache: str | Path | None = None) -> str:
    """One digest for the files `relpaths` under `root`, in sorted order of their relative paths.

    With `cache` (a file in the work folder), each file's digest is kept there with its size and
    modification time (ns), by relative path: a rerun stats every file and reads only the files
    whose size or modification time changed (a touched file is read again, and if its bytes are
    the same, so is the digest). A folder moved or copied with its times (`mv`, `cp -a`) keeps
    its digests. The result is the same with or without a cache.
    """
    root = Path(root)
    known = _read_cache(Path(cache)) if cache else {}
    seen, total = {}, hashlib.sha256()
    for rel in tqdm(sorted(relpaths), desc="fingerprint audio", unit="file", mininterval=2,
                    disable=len(relpaths) < 5000):
        status = os.stat(root / rel)
        stamp = [status.st_size, status.st_mtime_ns]
        entry = known.get(rel)
        digest = entry[2] if entry is not None and entry[:2] == stamp else file_digest(root / rel)
        seen[rel] = stamp + [digest]
        total.update(f"{rel}\t{digest}\n".encode())
    if cache and seen != known:
        _write_cache(Path(cache), seen)
    return total.hexdigest()[:16]


def _read_cache(path: Path) -> dict[str, list]:
    """{relative path: [size, mtime_ns, digest]} from a fingerprint cache; {} when there is none
    usable (missing, unreadable, or made with other digest settings)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("edge") != EDGE_BYTES:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path, files: dict[str, list]) -> None:
    """Replace the cache atomically (a private temporary name, then a rename: workers racing are safe)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "w") as f:
        json.dump({"version": CACHE_VERSION, "edge": EDGE_BYTES, "files": files}, f, separators=(",", ":"))


def tree_fingerprint(root: str | Path) -> str:
    """folder_fingerprint of every file under `root` (a Hugging Face model folder)."""
    root = Path(root)
    return folder_fingerprint(root, [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()])


def content_fingerprint(source: str) -> str:
    """The content of a user's input given as a path (alignments, transcripts, a teacher folder),
    not the path: a folder by tree_fingerprint, a file whole; "" when no path is given."""
    if not source:
        return ""
    path = Path(source).expanduser()
    return tree_fingerprint(path) if path.is_dir() else file_digest(path, edge=path.stat().st_size)

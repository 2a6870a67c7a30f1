"""Content fingerprints of input folders: the same audio gives the same stage hash wherever it lives.

Each file counts by its path relative to the folder, its size, and a SHA-256 of
its first and last 16 KiB (the header, which holds format and length, and the
last samples). Reading 32 KiB per file instead of all of it keeps a rerun cheap
on hundreds of hours (about 9 MiB read per hour of LibriSpeech-like utterances;
see README, "What a rerun does"); a re-encoded, trimmed or replaced file changes
the fingerprint, an edit inside a file that keeps its length, header and end
does not. Modification times and the folder's own location do not count.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm import tqdm

EDGE_BYTES = 16 * 1024


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


def folder_fingerprint(root: str | Path, relpaths: list[str]) -> str:
    """One digest for the files `relpaths` under `root`, in sorted order of their relative paths."""
    root = Path(root)
    total = hashlib.sha256()
    for rel in tqdm(sorted(relpaths), desc="fingerprint audio", unit="file", mininterval=2,
                    disable=len(relpaths) < 5000):
        total.update(f"{rel}\t{file_digest(root / rel)}\n".encode())
    return total.hexdigest()[:16]


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

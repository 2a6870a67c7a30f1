"""Which folders are the toolkit's: a folder is ours only when it carries MARKER.

Every folder a command writes into is claimed first: a new or empty folder is made and
marked; a folder that carries our marker of the same kind is ours to rewrite; anything
else (a folder the user made, one of theirs that shares a stage's name, our own folder of
another kind) is refused with one line naming it and the choice. Nothing is deleted or
replaced unless it is ours, and a replaced export is moved aside, not deleted.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from .atomic import write_text
from .path_checks import output_folder

MARKER = ".hubert.json"  # {"made_by": "hubert-pretrain", "kind": ..., "created": ...}
MADE_BY = "hubert-pretrain"


class NotOurs(ValueError):
    """A folder the toolkit would write into or remove that it did not make; names the folder."""


def marker_kind(folder: str | Path) -> str | None:
    """The kind our marker in `folder` names ("work", "stage", "export", ...), or None when unmarked."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("made_by") != MADE_BY:
        return None
    return str(data.get("kind", ""))


def mark(folder: str | Path, kind: str) -> None:
    """Say that `folder` is ours, of `kind` (written atomically; an existing marker is kept)."""
    if marker_kind(folder) == kind:
        return
    write_text(Path(folder) / MARKER, json.dumps({"made_by": MADE_BY, "kind": kind, "created": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")


def listing(folder: Path, most: int = 3) -> str:
    """'a.txt, data/ and 4 more': what a folder holds, for a message."""
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in os.scandir(folder))
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def is_empty(folder: Path) -> bool:
    return not any(True for _ in os.scandir(folder))


def claim(folder: str | Path, kind: str, what: str, earlier: Callable[[Path], bool] | None = None) -> Path:
    """`folder` as ours of `kind` to write into: made and marked when missing or empty, accepted when
    it carries our marker of that kind (or when `earlier(folder)` recognises the work of a version
    that wrote no marker: it is marked now). Raises NotOurs otherwise; `what` names the setting or
    argument in the message ("work_dir", "OUT_DIR")."""
    folder = Path(folder).expanduser()
    if folder.is_symlink() and not folder.exists():
        raise NotOurs(f"{what}: {folder} is a dangling link; give a real folder")
    if folder.exists() and folder.is_dir() and not is_empty(folder):
        found = marker_kind(folder)
        if found is None and earlier is not None and earlier(folder):
            found = kind
        if found != kind:
            raise NotOurs(refusal(folder, kind, what, found))
    output_folder(folder)
    mark(folder, kind)
    return folder


def refusal(folder: Path, kind: str, what: str, found: str | None,
            fix: str = "give a new or empty folder, or move those files yourself") -> str:
    """The one line that refuses to write a `kind` folder into `folder` (`found`: our marker's kind, if any)."""
    if found:
        return (f"{what}: {folder} is a {found} folder hubert made, not {_article(kind)} {kind} folder; "
                "give another path")
    return f"{what}: {folder} holds files hubert did not write ({listing(folder)}); nothing was changed: {fix}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def move_aside(folder: Path, parent: Path | None = None) -> Path:
    """Rename our `folder` to `parent/<name>-<UTC time>` (default: next to it, `<name>-replaced-<time>`);
    the bytes and modification times are kept. Returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stem = f"{folder.name}-{stamp}" if parent is not None else f"{folder.name}-replaced-{stamp}"
    parent = parent if parent is not None else folder.parent
    target, number = parent / stem, 1
    while target.exists():
        number += 1
        target = parent / f"{stem}-{number}"
    os.rename(folder, target)
    return target


def contains(outer: Path, inner: Path) -> bool:
    """Whether `inner` is `outer` or lies inside it (both resolved)."""
    outer, inner = outer.expanduser().resolve(), inner.expanduser().resolve()
    return inner == outer or outer in inner.parents

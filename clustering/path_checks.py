"""Paths given on the command line, checked for the right kind (file or folder) before any work.

A wrong kind would otherwise surface late, as NotADirectoryError, FileExistsError or
IsADirectoryError naming a temporary file; these raise one line naming the path and the fix.
"""
from __future__ import annotations

from pathlib import Path


class PathError(ValueError):
    """A path of the wrong kind (a file where a folder is needed, or the reverse)."""


def output_folder(path: str | Path) -> Path:
    """`path` as a folder to write into, created with its parents.

    Raises PathError when `path` or one of its parents is an existing file.
    """
    path = Path(path)
    _refuse_file_above(path)
    if path.exists() and not path.is_dir():
        raise PathError(f"{path}: is a file; give a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_file(path: str | Path) -> Path:
    """`path` as a file to (over)write, its parent folders created.

    Raises PathError when `path` is an existing folder or one of its parents is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{path}: is a folder; give a file name")
    _refuse_file_above(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def input_folder(path: str | Path, what: str = "folder") -> Path:
    """`path`, which must be an existing folder; `what` names it in the error ("feature folder")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if not path.is_dir():
        raise PathError(f"{path}: is a file; give a {what}")
    return path


def input_file(path: str | Path, what: str = "file") -> Path:
    """`path`, which must be an existing file; `what` names it in the error ("k-means teacher")."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if path.is_dir():
        raise PathError(f"{path}: is a folder; give the {what} file")
    return path


def _refuse_file_above(path: Path) -> None:
    """PathError when the nearest existing parent of `path` is a file: nothing can be made under it."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PathError(f"{path}: {parent} is a file, not a folder; give a path outside it")
            return

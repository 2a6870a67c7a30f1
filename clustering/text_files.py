"""Text and JSON inputs read one way: UTF-8 with or without a byte-order mark, and an error that
names the file and the fix when it is not UTF-8 or not valid JSON.

Editors on Windows (Notepad, Excel's "UTF-8 CSV") start a file with a byte-order mark; read as
plain UTF-8 it would become part of the first field ('\\ufeff/data/audio').
"""
from __future__ import annotations

import json
from pathlib import Path

UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


class TextFileError(ValueError):
    """A text input that cannot be read as such; the message names the file and the fix."""


def read_text(path: str | Path) -> str:
    """The text of `path` decoded as UTF-8, a leading byte-order mark dropped; TextFileError
    naming the file when it is not UTF-8."""
    return decode_text(Path(path).read_bytes(), path)


def decode_text(data: bytes, path: str | Path) -> str:
    """`data`, the bytes of `path`, as `read_text` decodes them."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        found = "UTF-16" if data[:2] in UTF16_MARKS else f"byte 0x{data[error.start]:02x} at offset {error.start}"
        raise TextFileError(f"{path}: not UTF-8 text ({found}); re-save it as UTF-8") from None


def read_json(path: str | Path, fix: str):
    """The JSON value in `path`; TextFileError naming the file, the line and column, and `fix`
    (e.g. "rerun `hubert labels` to rewrite it") when it is not UTF-8 or not valid JSON."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise TextFileError(f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); {fix}") from None

"""The configs shipped inside the package (`pipelines/configs/*.toml`), found by name from any folder.

`hubert run paper-base` reads the shipped file; `hubert run my.toml` reads the user's own. Both work
after a plain `pip install .`, since the files travel as package data, not in the source tree.
"""
from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """Each shipped config by name, sorted: {"custom-language": .../configs/custom-language.toml, ...}."""
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.toml"))}


def config_path(name_or_path: str | Path) -> Path:
    """The file a config argument means: an existing file as given (it wins over a shipped name),
    else the shipped config of that name (`paper-base` or `paper-base.toml`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_configs()
    text = str(name_or_path)
    name = text[:-len(".toml")] if text.endswith(".toml") else text
    if name in shipped:
        return shipped[name]
    what = "is a folder" if path.is_dir() else "is neither a config file nor a shipped config"
    raise FileNotFoundError(f"{text}: {what}; give a TOML file or a shipped config: "
                            f"{', '.join(shipped)} (`hubert configs` describes them)")


def first_comment(path: Path) -> str:
    """The first line of a config without its '#': the command that runs it, by convention."""
    lines = path.read_text().splitlines()
    first = lines[0].strip() if lines else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""

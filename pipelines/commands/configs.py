"""`hubert configs`: the configs shipped with the toolkit, each with the command that runs it."""
from __future__ import annotations

from pipelines.shipped import SHIPPED_DIR, first_comment, shipped_configs

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "configs",
                    "List the configs shipped with the toolkit, each with the command that runs it. "
                    "`hubert run NAME` runs one from any folder; copy its file to change more than "
                    "key=value overrides do, and run `hubert run your.toml`.",
                    "hubert configs")
    p.set_defaults(func=run)


def run(args) -> int:
    shipped = shipped_configs()
    width = max(map(len, shipped), default=0)
    for name, path in shipped.items():
        print(f"{name:<{width}}  {first_comment(path)}")
    print(f"(files in {SHIPPED_DIR})")
    return 0

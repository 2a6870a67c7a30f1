"""`hubert status`: which stages of a work directory are done."""
from __future__ import annotations

from pipelines.stages import describe

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "status",
                    "Show which stages of a `hubert run` work directory are done, started or pending.",
                    "hubert status work/demo")
    p.add_argument("work_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    for name, state, seconds in describe(args.work_dir):
        took = f"  ({seconds:.0f} s)" if seconds is not None else ""
        print(f"{name:<22} {state}{took}")
    return 0

"""`hubert status`: which stages of a work directory are done, and what reruns moved aside."""
from __future__ import annotations

from pipelines.stages import describe
from pipelines.workdir import human_bytes, superseded

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "status",
                    "Show which stages of a `hubert run` work directory are done, started or pending, "
                    "and the superseded training runs kept aside (remove them with `hubert prune`).",
                    "hubert status work/demo")
    p.add_argument("work_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    for name, state, seconds in describe(args.work_dir):
        took = f"  ({seconds:.0f} s)" if seconds is not None else ""
        print(f"{name:<22} {state}{took}")
    kept = superseded(args.work_dir)
    if kept:
        print(f"superseded runs ({human_bytes(sum(size for _, size in kept))}; `hubert prune "
              f"{args.work_dir}` deletes them):")
        for folder, size in kept:
            print(f"  {folder.name:<32} {human_bytes(size)}")
    return 0

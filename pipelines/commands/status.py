"""`hubert status`: which stages of a work directory are done, and what reruns moved aside."""
from __future__ import annotations

from pipelines.run_status import describe
from pipelines.workdir import human_bytes, superseded

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "status",
                    "Show which stages of a `hubert run` work directory are done (or done but out of date), "
                    "running, stopped or pending, and the superseded runs kept aside (remove them with "
                    "`hubert prune`).",
                    "hubert status work/demo")
    p.add_argument("work_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    for name, state, seconds in describe(args.work_dir):
        took = f"  ({seconds:.0f} s)" if seconds is not None else ""
        print(f"{name:<22} {state}{took}")
    kept, others = superseded(args.work_dir)
    if kept:
        print(f"superseded runs ({human_bytes(sum(size for _, size in kept))}; `hubert prune "
              f"{args.work_dir}` deletes them):")
        for folder, size in kept:
            print(f"  {folder.name:<32} {human_bytes(size)}")
    for path in others:
        print(f"  {path.name:<32} not put there by hubert; prune leaves it alone")
    return 0

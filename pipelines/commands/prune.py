"""`hubert prune`: delete the superseded runs that reruns moved aside."""
from __future__ import annotations

from pipelines.workdir import human_bytes, prune

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "prune",
                    "Delete WORK_DIR/superseded/: stage folders that a rerun moved aside instead of deleting "
                    "(changed settings or inputs, --from). Only the work folder of a `hubert run`, and only "
                    "what hubert moved there; refuses while a run uses the folder.",
                    "hubert status work/ls   # lists superseded runs and their sizes\nhubert prune work/ls")
    p.add_argument("work_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    gone, others = prune(args.work_dir)
    for folder, size in gone:
        print(f"removed {folder} ({human_bytes(size)})")
    for path in others:
        print(f"left {path}: hubert did not put it there")
    print(f"freed {human_bytes(sum(size for _, size in gone))}" if gone else "nothing superseded to remove")
    return 0

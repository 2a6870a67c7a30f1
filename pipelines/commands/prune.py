"""`hubert prune`: delete the superseded training runs that reruns moved aside."""
from __future__ import annotations

from pipelines.workdir import human_bytes, prune

from . import add_command


def add_parser(subparsers) -> None:
    p = add_command(subparsers, "prune",
                    "Delete WORK_DIR/superseded/: training folders that a rerun moved aside instead of "
                    "deleting (changed settings or inputs, --from). Nothing else is touched; refuses while "
                    "a run uses the folder.",
                    "hubert status work/ls   # lists superseded runs and their sizes\nhubert prune work/ls")
    p.add_argument("work_dir")
    p.set_defaults(func=run)


def run(args) -> int:
    gone = prune(args.work_dir)
    for folder, size in gone:
        print(f"removed {folder} ({human_bytes(size)})")
    print(f"freed {human_bytes(sum(size for _, size in gone))}" if gone else "nothing superseded to remove")
    return 0

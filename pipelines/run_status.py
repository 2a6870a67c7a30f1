"""`hubert status`: the state of each stage of a work folder, read from its records alone.

A stage is "done" only while what it read is what its inputs hold now: a stage whose input
finished again since (a retrained model, `--from`) or no longer holds a finished run is out of
date, and so is everything downstream of it. A started stage is "running" while the work
folder's lock is held, else it stopped (crash, kill) and a rerun continues or redoes it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .stages import DONE, STARTED, describe_extension, read_record, redone_inputs
from .workdir import ORDER, lock_holder


def stage_order(work_dir: Path) -> list[str]:
    """The stage names of the last run (stages.json); errors name the file and the fix."""
    path = work_dir / ORDER
    if not path.exists():
        raise FileNotFoundError(f"{work_dir}: no pipeline has run here ({ORDER} missing)")
    try:
        order = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable ({error}); rerun the `hubert run` command to rewrite it") from None
    names = order.get("stages") if isinstance(order, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected {{\"stages\": [stage names]}}; rerun the `hubert run` command "
                         "to rewrite it")
    return names


def describe(work_dir: str | Path) -> list[tuple[str, str, float | None]]:
    """(stage, state, seconds) for each stage of the last run in `work_dir`, in run order."""
    work_dir = Path(work_dir).expanduser()
    holder = lock_holder(work_dir)
    rows, stale = [], set()
    for name in stage_order(work_dir):
        folder = work_dir / name
        done, started = read_record(folder / DONE), read_record(folder / STARTED)
        if done is not None:
            inputs = list(done.get("inputs", {}))
            why = [f"{a} is out of date" for a in inputs if a in stale] + \
                  [f"{a} has no finished run" for a in inputs if read_record(work_dir / a / DONE) is None] + \
                  [f"{a} was redone since" for a in redone_inputs(inputs, done, work_dir)]
            if why:
                stale.add(name)
            extended = f" (extended: continues a finished run of {describe_extension(done['extended_from'])})" \
                if done.get("extended_from") else ""
            rows.append((name, (f"done, out of date: {why[0]}" if why else "done") + extended, done.get("seconds")))
        elif started is not None:
            rows.append((name, f"running in {holder}" if holder else
                         "stopped before finishing (crash or kill); rerun to continue", None))
        else:
            rows.append((name, "pending", None))
    return rows

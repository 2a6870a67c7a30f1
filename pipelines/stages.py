"""Staged runs: a stage that is done is skipped, a stage whose settings or inputs changed
is redone with everything after it, and nothing a user cannot regenerate is deleted.

Each stage owns one folder `WORK_DIR/<name>/`. Before it runs, `STARTED.json`
records the stage's hash, settings and input hashes; after it returns,
`DONE.json` records them again. The hash covers the stage's own settings and
the hashes of the stages it reads, so a change upstream changes every hash
downstream. A training (resumable) stage is never deleted: when it must start
over, its folder moves to `WORK_DIR/superseded/<name>-<UTC time>/`; when only
its budget grew (`max_updates` raised) it continues from its newest checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .spread import new_run_id, shared_run_id, torchrun_group, worker
from .workdir import move_aside, work_lock

DONE = "DONE.json"
STARTED = "STARTED.json"
ORDER = "stages.json"


@dataclass
class Stage:
    """One step of a pipeline.

    `run(folder)` writes the stage's output into `folder`. `settings` is
    everything that decides that output (JSON-serialisable). `after` names the
    stages whose output it reads. A `resumable` stage (pretraining) is continued
    in place after a crash, and `budget` holds its settings that may be raised
    without starting over (`max_updates`); any other stage is wiped and redone.
    `refresh(folder)`, when given, updates a done stage's output for changes that
    do not count as a change (a corpus moved to a new folder) each time it is skipped.
    A `shared` stage runs on every torchrun worker, each on its shard (see spread.py).
    """

    name: str
    run: Callable[[Path], object]
    settings: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()
    resumable: bool = False
    budget: dict = field(default_factory=dict)
    refresh: Callable[[Path], None] | None = None
    shared: bool = False


def _digest(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stage_hashes(stages: list[Stage]) -> dict[str, str]:
    """Hash per stage (settings, budget and input hashes), chained through `after`;
    stages must be listed in run order."""
    hashes: dict[str, str] = {}
    for stage in stages:
        missing = [name for name in stage.after if name not in hashes]
        if missing:
            raise ValueError(f"stage {stage.name} reads {missing}, which do not run before it")
        hashes[stage.name] = _digest({"settings": stage.settings, "budget": stage.budget,
                                      "inputs": [hashes[a] for a in stage.after]})
    return hashes


def _identity(stage: Stage, hashes: dict[str, str]) -> str:
    """What a resumable stage's checkpoints continue: its hash without the budget."""
    return _digest({"settings": stage.settings, "inputs": [hashes[a] for a in stage.after]})


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _write(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def run_stages(stages: list[Stage], work_dir: str | Path, start: str | None = None,
               until: str | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Run `stages` in order under `work_dir`; returns the names of the stages that ran.

    `start` reruns that stage and all after it even if done (earlier ones must be
    done or are run first); `until` stops after the named stage. One run per
    work folder at a time. Under torchrun, worker 0 runs every stage and the
    other workers join the resumable (training) stages, following worker 0's
    marker files of this run in between, so they honour `start` and `until` too.
    """
    work_dir = Path(work_dir)
    names = [s.name for s in stages]
    for name in (start, until):
        if name is not None and name not in names:
            raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(names)}")
    forced = names.index(start) if start else len(names)
    with torchrun_group():
        if worker()[0] > 0:
            return _follow(stages, work_dir, forced, until, shared_run_id(None))
        work_dir.mkdir(parents=True, exist_ok=True)
        with work_lock(work_dir):
            run_id = shared_run_id(new_run_id())
            _write(work_dir / ORDER, {"stages": names})
            return _lead(stages, work_dir, forced, until, run_id, log)


def _lead(stages, work_dir: Path, forced: int, until, run_id: str, log) -> list[str]:
    hashes, causes, ran = stage_hashes(stages), {}, []
    for index, stage in enumerate(stages):
        folder = work_dir / stage.name
        action, reason = _decide(stage, folder, hashes, index >= forced, causes)
        if action == "skip":
            if stage.refresh is not None:
                stage.refresh(folder)
            log(f"[{stage.name}] done, skipped")
        else:
            causes[stage.name] = _cause(stage, reason, causes)
            _run_one(stage, folder, hashes, action, reason, run_id, log)
            ran.append(stage.name)
        if stage.name == until:
            break
    return ran


def _cause(stage: Stage, reason: str, causes: dict[str, str]) -> str:
    """What made a stage rerun, traced to its origin, for the stages that read it."""
    inherited = [causes[name] for name in stage.after if name in causes]
    if reason.startswith("settings changed"):
        return f"{stage.name} {reason}"
    return inherited[0] if inherited and reason.startswith("input") else f"{stage.name}: {reason}"


def _decide(stage: Stage, folder: Path, hashes: dict[str, str], forced: bool,
            causes: dict[str, str]) -> tuple[str, str]:
    """('skip' | 'resume' | 'extend' | 'fresh', why) for one stage."""
    done, started = _read(folder / DONE), _read(folder / STARTED)
    if forced:
        return "fresh", "rerun from here (--from)"
    if done is not None and done.get("hash") == hashes[stage.name]:
        return "skip", ""
    if stage.resumable and started is not None and started.get("identity") == _identity(stage, hashes):
        before = started.get("budget", {})
        if all(stage.budget[k] >= before.get(k, stage.budget[k]) for k in stage.budget):
            raised = _changes(before, stage.budget)  # '' when the budget is the same
            if done is not None:
                return "extend", f"schedule changed ({raised}): continuing from the newest checkpoint"
            return "resume", "continuing a run that stopped" + (f"; schedule changed ({raised})" if raised else "")
    if not folder.exists():
        return "fresh", "not run yet"
    return "fresh", _why_changed(stage, done or started, hashes, causes)


def _why_changed(stage: Stage, record: dict | None, hashes: dict[str, str], causes: dict[str, str]) -> str:
    """One line naming the settings and inputs that differ from the folder's last run."""
    if record is None or "inputs" not in record:
        return "its folder holds no run this version of the toolkit can continue"
    before = {"settings": record.get("settings", {}), "budget": record.get("budget", {})}
    changed = _changes(before, {"settings": stage.settings, "budget": stage.budget})
    parts = [f"settings changed: {changed}"] if changed else []
    for name in stage.after:
        if record["inputs"].get(name) != hashes[name]:
            parts.append(f"input {name} changed" + (f" ({causes[name]})" if name in causes else ""))
    return "; ".join(parts) or "settings changed"


def _flatten(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, default=str)
    return out


def _changes(before: dict, now: dict, most: int = 4) -> str:
    """'key old -> new, ...' for the (nested) keys whose values differ; '' when none do."""
    before, now = _flatten(before), _flatten(now)
    keys = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    shown = [f"{k.removeprefix('settings.').removeprefix('budget.')} {before.get(k, '(none)')} -> "
             f"{now.get(k, '(none)')}" for k in keys[:most]]
    return ", ".join(shown) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _record(stage: Stage, hashes: dict[str, str], run_id: str) -> dict:
    return {"hash": hashes[stage.name], "identity": _identity(stage, hashes), "settings": stage.settings,
            "budget": stage.budget, "inputs": {a: hashes[a] for a in stage.after}, "run": run_id}


def _run_one(stage: Stage, folder: Path, hashes: dict[str, str], action: str, reason: str,
             run_id: str, log: Callable[[str], None]) -> None:
    if action == "fresh" and folder.exists():
        if stage.resumable:  # trained weights are never deleted
            log(f"[{stage.name}] {reason}: moved the previous run to {move_aside(folder)}")
        else:
            shutil.rmtree(folder)
            log(f"[{stage.name}] {reason}")
    elif action != "fresh" or reason != "not run yet":
        log(f"[{stage.name}] {reason}")
    (folder / DONE).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    log(f"[{stage.name}] {'resuming' if action in ('resume', 'extend') else 'running'}")
    begin = time.time()
    _write(folder / STARTED, _record(stage, hashes, run_id))
    stage.run(folder)
    _write(folder / DONE, {**_record(stage, hashes, run_id), "seconds": round(time.time() - begin, 1)})
    log(f"[{stage.name}] done in {time.time() - begin:.1f} s")


def _follow(stages: list[Stage], work_dir: Path, forced: int, until: str | None, run_id: str,
            poll: float = 2.0) -> list[str]:
    """A non-zero torchrun worker: wait for worker 0's stages of this run, join the training and
    shared ones."""
    hashes, ran = stage_hashes(stages), []
    for index, stage in enumerate(stages):
        folder, hash_ = work_dir / stage.name, hashes[stage.name]
        while True:
            done, started = _read(folder / DONE) or {}, _read(folder / STARTED) or {}
            if done.get("hash") == hash_ and (index < forced or done.get("run") == run_id):
                break  # skipped or finished by worker 0
            if (stage.resumable or stage.shared) and started.get("run") == run_id and started.get("hash") == hash_:
                stage.run(folder)  # joins worker 0: in DistributedDataParallel, or on its shard
                ran.append(stage.name)
                break
            time.sleep(poll)
        if stage.name == until:
            break
    return ran


def describe(work_dir: str | Path) -> list[tuple[str, str, float | None]]:
    """(stage, state, seconds) for each stage of the last run in `work_dir`, for `hubert status`."""
    work_dir = Path(work_dir)
    order = _read(work_dir / ORDER)
    if order is None:
        raise FileNotFoundError(f"{work_dir}: no pipeline has run here ({ORDER} missing)")
    rows = []
    for name in order["stages"]:
        folder = work_dir / name
        done, started = _read(folder / DONE), _read(folder / STARTED)
        if done is not None:
            rows.append((name, "done", done.get("seconds")))
        elif started is not None:
            rows.append((name, "started, not finished", None))
        else:
            rows.append((name, "pending", None))
    return rows

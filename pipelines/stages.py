"""Staged runs: a stage that is done is skipped, a stage whose settings or inputs
changed is redone with everything after it, and no stage reads half-written output.

Each stage owns one folder `WORK_DIR/<name>/`. Before it runs, `STARTED.json`
records the stage's hash; after it returns, `DONE.json` records it again. The
hash covers the stage's own settings and the hashes of the stages it reads, so
a change anywhere upstream changes every hash downstream.
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

DONE = "DONE.json"
STARTED = "STARTED.json"
ORDER = "stages.json"


@dataclass
class Stage:
    """One step of a pipeline.

    `run(folder)` writes the stage's output into `folder`. `settings` is
    everything that decides that output (JSON-serialisable). `after` names the
    stages whose output it reads. A `resumable` stage (pretraining) is continued
    in place after a crash; any other stage is wiped and redone.
    """

    name: str
    run: Callable[[Path], object]
    settings: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()
    resumable: bool = False


def stage_hashes(stages: list[Stage]) -> dict[str, str]:
    """Hash per stage, chained through `after`; stages must be listed in run order."""
    hashes: dict[str, str] = {}
    for stage in stages:
        missing = [name for name in stage.after if name not in hashes]
        if missing:
            raise ValueError(f"stage {stage.name} reads {missing}, which do not run before it")
        payload = json.dumps({"settings": stage.settings, "inputs": [hashes[a] for a in stage.after]},
                             sort_keys=True, default=str)
        hashes[stage.name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return hashes


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write(path: Path, record: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def stage_state(work_dir: Path, name: str, hash_: str) -> str:
    """'done', 'stale' (done with other settings), 'partial' (started, not done), or 'pending'."""
    folder = Path(work_dir) / name
    done = _read(folder / DONE)
    if done is not None:
        return "done" if done.get("hash") == hash_ else "stale"
    return "partial" if folder.exists() else "pending"


def run_stages(stages: list[Stage], work_dir: str | Path, start: str | None = None,
               until: str | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Run `stages` in order under `work_dir`; returns the names of the stages that ran.

    `start` reruns that stage and all after it even if done (earlier ones must be
    done or are run first); `until` stops after the named stage. Under torchrun,
    worker 0 runs every stage and the other workers join only the resumable
    (training) stages, waiting for worker 0's marker files in between.
    """
    work_dir = Path(work_dir)
    if int(os.environ.get("RANK", "0")) > 0:
        return _follow(stages, work_dir, until)
    work_dir.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in stages]
    for name in (start, until):
        if name is not None and name not in names:
            raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(names)}")
    _write(work_dir / ORDER, {"stages": names})
    hashes = stage_hashes(stages)
    forced = names.index(start) if start else len(names)
    ran = []
    for index, stage in enumerate(stages):
        folder = work_dir / stage.name
        state = stage_state(work_dir, stage.name, hashes[stage.name])
        if state == "done" and index < forced:
            log(f"[{stage.name}] done, skipped")
        else:
            _run_one(stage, folder, hashes[stage.name], log)
            ran.append(stage.name)
        if stage.name == until:
            break
    return ran


def _follow(stages: list[Stage], work_dir: Path, until: str | None, poll: float = 5.0) -> list[str]:
    """A non-zero torchrun worker: wait for worker 0's stages, join the training ones."""
    hashes, ran = stage_hashes(stages), []
    for stage in stages:
        folder, hash_ = work_dir / stage.name, hashes[stage.name]
        marker = STARTED if stage.resumable else DONE
        while (_read(folder / marker) or {}).get("hash") != hash_:
            time.sleep(poll)
        if stage.resumable and (_read(folder / DONE) or {}).get("hash") != hash_:
            stage.run(folder)  # joins worker 0 in DistributedDataParallel
            ran.append(stage.name)
        if stage.name == until:
            break
    return ran


def _run_one(stage: Stage, folder: Path, hash_: str, log: Callable[[str], None]) -> None:
    started = _read(folder / STARTED)
    resuming = stage.resumable and started is not None and started.get("hash") == hash_ \
        and _read(folder / DONE) is None
    if folder.exists() and not resuming:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log(f"[{stage.name}] {'resuming' if resuming else 'running'}")
    begin = time.time()
    if not resuming:
        _write(folder / STARTED, {"hash": hash_, "settings": stage.settings})
    stage.run(folder)
    _write(folder / DONE, {"hash": hash_, "settings": stage.settings,
                           "seconds": round(time.time() - begin, 1)})
    log(f"[{stage.name}] done in {time.time() - begin:.1f} s")


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

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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from clustering.ownership import MARKER, NotOurs, is_empty, listing, mark
from pretrain.typed_settings import describe_changes

from .spread import new_run_id, shared_run_id, torchrun_group, worker
from .workdir import ORDER, claim_work_folder, is_stage_folder, move_aside, work_lock

DONE = "DONE.json"
STARTED = "STARTED.json"
BOOKKEEPING = (MARKER, STARTED, DONE)  # a stage folder's own records, not its outputs


@dataclass
class Stage:
    """One step of a pipeline.

    `run(folder)` writes the stage's output into `folder`. `settings` is
    everything that decides that output (JSON-serialisable). `after` names the
    stages whose output it reads. A `resumable` stage (pretraining) is continued
    in place after a crash, and `budget` holds its settings that may be raised
    without starting over (`max_updates`); any other stage is wiped and redone.
    `refresh(folder)`, when given, runs each time the stage is done (run now or skipped): it updates
    the output for changes that do not count as a change (a corpus moved to a new folder) and checks
    it against inputs that do not decide it (alignments against the manifests).
    A `shared` stage runs on every torchrun worker, each on its shard (see spread.py).
    A `keep` stage (the exports) is moved aside like a resumable one when redone: users may
    have built on it.
    """

    name: str
    run: Callable[[Path], object]
    settings: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()
    resumable: bool = False
    budget: dict = field(default_factory=dict)
    refresh: Callable[[Path], None] | None = None
    shared: bool = False
    keep: bool = False


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
    """A stage record, or None when it is missing or unreadable (a stage killed while writing it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
    if until is not None and names.index(until) < forced < len(names):
        raise ValueError(f"--from {start} comes after --until {until}: nothing would run; "
                         f"give --from a stage at or before {until}")
    with torchrun_group():
        if worker()[0] > 0:
            return _follow(stages, work_dir, forced, until, shared_run_id(None))
        claim_work_folder(work_dir)
        with work_lock(work_dir):
            check_stage_folders(stages, work_dir)
            run_id = shared_run_id(new_run_id())
            _write(work_dir / ORDER, {"stages": names})
            return _lead(stages, work_dir, forced, until, run_id, log)


def check_stage_folders(stages: list[Stage], work_dir: Path) -> None:
    """NotOurs, before any stage runs, for a folder in `work_dir` named like a stage that hubert did
    not make (it would be rewritten or moved): the run touches nothing."""
    for stage in stages:
        folder = work_dir / stage.name
        if folder.is_symlink() or (folder.exists() and not (folder.is_dir() and (
                is_empty(folder) or is_stage_folder(folder)))):
            what = "a link" if folder.is_symlink() else "a file" if not folder.is_dir() else \
                f"a folder hubert did not make ({listing(folder)})"
            raise NotOurs(f"{folder}: is {what}, where the {stage.name} stage keeps its output; nothing was "
                          f"changed: move it out of {work_dir}, or choose another work_dir")


def _lead(stages, work_dir: Path, forced: int, until, run_id: str, log) -> list[str]:
    hashes, causes, ran = stage_hashes(stages), {}, []
    for index, stage in enumerate(stages):
        folder = work_dir / stage.name
        action, reason = _decide(stage, folder, hashes, index >= forced, causes)
        if action == "skip":
            log(f"[{stage.name}] done, skipped")
        else:
            causes[stage.name] = _cause(stage, reason, causes)
            _run_one(stage, folder, hashes, action, reason, run_id, log)
            ran.append(stage.name)
        if stage.refresh is not None:
            stage.refresh(folder)
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
        redone = redone_inputs(stage.after, done, folder.parent)
        if not redone:
            return "skip", ""
        return "fresh", f"input {redone[0]} was redone since this stage ran"
    if stage.resumable and started is not None and started.get("identity") == _identity(stage, hashes):
        before = started.get("budget", {})
        if all(stage.budget[k] >= before.get(k, stage.budget[k]) for k in stage.budget):
            raised = describe_changes(before, stage.budget)  # '' when the budget is the same
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
    changed = describe_changes(before, {"settings": stage.settings, "budget": stage.budget})
    parts = [f"settings changed: {changed}"] if changed else []
    for name in stage.after:
        if record["inputs"].get(name) != hashes[name]:
            parts.append(f"input {name} changed" + (f" ({causes[name]})" if name in causes else ""))
    return "; ".join(parts) or "settings changed"


def _record(stage: Stage, hashes: dict[str, str], run_id: str, work_dir: Path) -> dict:
    instances = {a: (_read(work_dir / a / DONE) or {}).get("instance") for a in stage.after}
    return {"hash": hashes[stage.name], "identity": _identity(stage, hashes), "settings": stage.settings,
            "budget": stage.budget, "inputs": {a: hashes[a] for a in stage.after}, "run": run_id,
            "input_instances": instances}


def redone_inputs(after: tuple[str, ...] | list[str], done: dict, work_dir: Path) -> list[str]:
    """The inputs of a done stage that finished again since it ran (their DONE `instance` differs from
    the one it recorded): its output came from their previous run. Records without instances
    (earlier versions) count as unchanged."""
    recorded = done.get("input_instances") or {}
    redone = []
    for name in after:
        now = (_read(work_dir / name / DONE) or {}).get("instance")
        if recorded.get(name) and recorded.get(name) != now:
            redone.append(name)
    return redone


def _clear(stage: Stage, folder: Path, reason: str, log: Callable[[str], None]) -> None:
    """Make way for a fresh run of `stage`: a training or export folder, or one holding files that its
    last run did not write (a user's), is moved to WORK_DIR/superseded/; any other is ours and removed."""
    done = _read(folder / DONE) or {}
    extra = sorted(set(os.listdir(folder)) - set(BOOKKEEPING) - set(done["outputs"])) if "outputs" in done else []
    if stage.resumable or stage.keep or extra:
        note = f" (it holds {', '.join(extra[:3])}, which its last run did not write)" if extra and not (
            stage.resumable or stage.keep) else ""
        log(f"[{stage.name}] {reason}: moved the previous run to {move_aside(folder)}{note}")
    else:
        shutil.rmtree(folder)
        log(f"[{stage.name}] {reason}")


def _run_one(stage: Stage, folder: Path, hashes: dict[str, str], action: str, reason: str,
             run_id: str, log: Callable[[str], None]) -> None:
    if action == "fresh" and folder.exists() and not is_empty(folder):
        _clear(stage, folder, reason, log)
    elif action != "fresh" or reason != "not run yet":
        log(f"[{stage.name}] {reason}")
    (folder / DONE).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    mark(folder, "stage")
    log(f"[{stage.name}] {'resuming' if action in ('resume', 'extend') else 'running'}")
    begin = time.time()
    record = _record(stage, hashes, run_id, folder.parent)
    _write(folder / STARTED, record)
    stage.run(folder)
    outputs = sorted(set(os.listdir(folder)) - set(BOOKKEEPING))
    _write(folder / DONE, {**record, "seconds": round(time.time() - begin, 1), "outputs": outputs,
                           "instance": uuid.uuid4().hex[:12]})
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
            current = done.get("hash") == hash_ and not redone_inputs(stage.after, done, work_dir)
            if current and (index < forced or done.get("run") == run_id):
                break  # skipped or finished by worker 0
            if (stage.resumable or stage.shared) and started.get("run") == run_id and started.get("hash") == hash_:
                stage.run(folder)  # joins worker 0: in DistributedDataParallel, or on its shard
                ran.append(stage.name)
                break
            time.sleep(poll)
        if stage.name == until:
            break
    return ran

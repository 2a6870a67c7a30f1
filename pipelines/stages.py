"""Staged runs: a stage that is done is skipped, a stage whose settings or inputs changed
is redone with everything after it, and nothing a user cannot regenerate is deleted.

Each stage (declaration.py) owns one folder `WORK_DIR/<name>/`. Before it runs, `STARTED.json`
records the stage's hash, settings and the outputs it reads; after it returns, `DONE.json`
records them again with the stage's own `output` and `instance`. The hash covers the stage's
settings, its user inputs' content and the outputs of the stages it reads, so a change
upstream changes every hash downstream. A stage's output is its hash, unless it was extended
(its budget raised after it finished): then the extension is part of it, so everything built
on an extended run differs from what a fresh run with the larger budget gives, and says so.
A training (resumable) stage is never deleted: when it must start over, its folder moves to
`WORK_DIR/superseded/<name>-<UTC time>/`; when only its budget grew it continues.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

from clustering.atomic import write_text
from clustering.ownership import MARKER, NotOurs, is_empty, listing, mark
from pretrain.typed_settings import describe_changes

from .declaration import Stage, digest
from .layout import WorkLayout
from .spread import new_run_id, shared_run_id, torchrun_group, worker
from .workdir import ORDER, claim_work_folder, is_stage_folder, move_aside, work_lock

DONE = "DONE.json"
STARTED = "STARTED.json"
BOOKKEEPING = (MARKER, STARTED, DONE)  # a stage folder's own records, not its outputs


def check_declarations(stages: list[Stage]) -> None:
    """ValueError unless names are unique and every stage reads only stages that run before it."""
    seen: set[str] = set()
    for stage in stages:
        missing = [name for name in (*stage.reads, *stage.hashed_reads()) if name not in seen]
        if stage.name in seen or missing:
            raise ValueError(f"stage {stage.name} " + (f"reads {missing}, which do not run before it" if missing
                                                       else "is declared twice"))
        seen.add(stage.name)


def stage_hash(stage: Stage, outputs: dict[str, str]) -> str:
    """The stage's hash: its settings, budget and user inputs, and the `outputs` of the stages it reads."""
    return digest({"settings": stage.settings_record(), "budget": stage.budget(),
                   "inputs": [outputs[a] for a in stage.hashed_reads()]})


def _identity(stage: Stage, outputs: dict[str, str]) -> str:
    """What a resumable stage's checkpoints continue: its hash without the budget."""
    return digest({"settings": stage.settings_record(), "inputs": [outputs[a] for a in stage.hashed_reads()]})


def stage_hashes(stages: list[Stage]) -> dict[str, str]:
    """The hash of every stage of a run in which nothing was extended (each output its hash)."""
    check_declarations(stages)
    hashes: dict[str, str] = {}
    for stage in stages:
        hashes[stage.name] = stage_hash(stage, hashes)
    return hashes


def output_of(record: dict) -> str:
    """What a done stage gives the stages that read it (records of earlier versions: their hash)."""
    return record.get("output") or record["hash"]


def read_record(path: Path) -> dict | None:
    """A stage record, or None when it is missing or unreadable (a stage killed while writing it)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, record: dict) -> None:
    write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")


def run_stages(stages: list[Stage], work_dir: str | Path, start: str | None = None,
               until: str | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Run `stages` in order under `work_dir`; returns the names of the stages that ran.

    `start` reruns that stage and all after it even if done (earlier ones must be
    done or are run first); `until` stops after the named stage. One run per
    work folder at a time. Under torchrun, worker 0 runs every stage and the
    other workers join the resumable (training) and shared ones, following worker 0's
    records of this run in between, so they honour `start` and `until` too.
    """
    layout = WorkLayout(Path(work_dir))
    check_declarations(stages)
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
            return _follow(stages, layout, forced, until, shared_run_id(None))
        claim_work_folder(layout.root)
        with work_lock(layout.root):
            check_stage_folders(stages, layout)
            run_id = shared_run_id(new_run_id())
            _write(layout.order, {"stages": names})
            return _lead(stages, layout, forced, until, run_id, log)


def check_stage_folders(stages: list[Stage], layout: WorkLayout) -> None:
    """NotOurs, before any stage runs, for a folder in the work folder named like a stage that hubert
    did not make (it would be rewritten or moved): the run touches nothing."""
    for stage in stages:
        folder = layout.stage(stage.name)
        if folder.is_symlink() or (folder.exists() and not (folder.is_dir() and (
                is_empty(folder) or is_stage_folder(folder)))):
            what = "a link" if folder.is_symlink() else "a file" if not folder.is_dir() else \
                f"a folder hubert did not make ({listing(folder)})"
            raise NotOurs(f"{folder}: is {what}, where the {stage.name} stage keeps its output; nothing was "
                          f"changed: move it out of {layout.root}, or choose another work_dir")


def _lead(stages: list[Stage], layout: WorkLayout, forced: int, until, run_id: str, log) -> list[str]:
    outputs, causes, ran = {}, {}, []
    for index, stage in enumerate(stages):
        folder = layout.stage(stage.name)
        action, reason = _decide(stage, folder, outputs, index >= forced, causes)
        if action == "skip":
            log(f"[{stage.name}] done, skipped")
        else:
            causes[stage.name] = _cause(stage, reason, causes)
            _run_one(stage, layout, outputs, action, reason, run_id, log)
            ran.append(stage.name)
        outputs[stage.name] = output_of(read_record(folder / DONE))
        if stage.refresh is not None:
            stage.refresh(stage.inputs(layout), folder, stage.settings)
        if stage.name == until:
            break
    return ran


def _cause(stage: Stage, reason: str, causes: dict[str, str]) -> str:
    """What made a stage rerun, traced to its origin, for the stages that read it."""
    inherited = [causes[name] for name in stage.reads if name in causes]
    if reason.startswith("settings changed"):
        return f"{stage.name} {reason}"
    return inherited[0] if inherited and reason.startswith("input") else f"{stage.name}: {reason}"


def _decide(stage: Stage, folder: Path, outputs: dict[str, str], forced: bool,
            causes: dict[str, str]) -> tuple[str, str]:
    """('skip' | 'resume' | 'extend' | 'fresh', why) for one stage."""
    done, started = read_record(folder / DONE), read_record(folder / STARTED)
    if forced:
        return "fresh", "rerun from here (--from)"
    if done is not None and done.get("hash") == stage_hash(stage, outputs):
        redone = redone_inputs(stage.reads, done, folder.parent)
        if not redone:
            return "skip", ""
        return "fresh", f"input {redone[0]} was redone since this stage ran"
    if stage.resumable and started is not None and started.get("identity") == _identity(stage, outputs):
        before, budget = started.get("budget", {}), stage.budget()
        if all(budget[k] >= before.get(k, budget[k]) for k in budget):
            raised = describe_changes(before, budget)  # '' when the budget is the same
            if done is not None:
                return "extend", f"schedule changed ({raised}): continuing from the newest checkpoint"
            return "resume", "continuing a run that stopped" + (f"; schedule changed ({raised})" if raised else "")
    if not folder.exists():
        return "fresh", "not run yet"
    return "fresh", _why_changed(stage, done or started, outputs, causes)


def _why_changed(stage: Stage, record: dict | None, outputs: dict[str, str], causes: dict[str, str]) -> str:
    """One line naming the settings and inputs that differ from the folder's last run."""
    if record is None or "inputs" not in record:
        return "its folder holds no run this version of the toolkit can continue"
    before = {"settings": record.get("settings", {}), "budget": record.get("budget", {})}
    changed = describe_changes(before, {"settings": stage.settings_record(), "budget": stage.budget()})
    parts = [f"settings changed: {changed}"] if changed else []
    for name in stage.hashed_reads():
        if record["inputs"].get(name) != outputs[name]:
            parts.append(f"input {name} changed" + (f" ({causes[name]})" if name in causes else ""))
    return "; ".join(parts) or "settings changed"


def redone_inputs(reads: tuple[str, ...] | list[str], done: dict, work_dir: Path) -> list[str]:
    """The inputs of a done stage that finished again since it ran (their DONE `instance` differs from
    the one it recorded): its output came from their previous run. Records without instances
    (earlier versions) count as unchanged."""
    recorded = done.get("input_instances") or {}
    redone = []
    for name in reads:
        now = (read_record(work_dir / name / DONE) or {}).get("instance")
        if recorded.get(name) and recorded.get(name) != now:
            redone.append(name)
    return redone


def _record(stage: Stage, outputs: dict[str, str], run_id: str, work_dir: Path) -> dict:
    instances = {a: (read_record(work_dir / a / DONE) or {}).get("instance") for a in stage.reads}
    return {"hash": stage_hash(stage, outputs), "identity": _identity(stage, outputs),
            "settings": stage.settings_record(), "budget": stage.budget(), "run": run_id,
            "inputs": {a: outputs[a] for a in stage.hashed_reads()}, "input_instances": instances}


def _lineage(action: str, folder: Path) -> list[dict]:
    """What this run of a stage continues: for an extension, the finished run it extends (and what that
    one extended); when resuming, what the interrupted run had recorded."""
    if action == "extend":
        done = read_record(folder / DONE) or {}
        return done.get("extended_from", []) + [{"budget": done.get("budget", {}), "output": output_of(done),
                                                 "instance": done.get("instance")}]
    if action == "resume":
        return (read_record(folder / STARTED) or {}).get("extended_from", [])
    return []


def _clear(stage: Stage, folder: Path, reason: str, log: Callable[[str], None]) -> None:
    """Make way for a fresh run of `stage`: a training or export folder, or one holding files that its
    last run did not write (a user's), is moved to WORK_DIR/superseded/; any other is ours and removed."""
    done = read_record(folder / DONE) or {}
    extra = sorted(set(os.listdir(folder)) - set(BOOKKEEPING) - set(done["outputs"])) if "outputs" in done else []
    if stage.resumable or stage.keep or extra:
        note = f" (it holds {', '.join(extra[:3])}, which its last run did not write)" if extra and not (
            stage.resumable or stage.keep) else ""
        log(f"[{stage.name}] {reason}: moved the previous run to {move_aside(folder)}{note}")
    else:
        shutil.rmtree(folder)
        log(f"[{stage.name}] {reason}")


def _run_one(stage: Stage, layout: WorkLayout, outputs: dict[str, str], action: str, reason: str,
             run_id: str, log: Callable[[str], None]) -> None:
    folder = layout.stage(stage.name)
    lineage = _lineage(action, folder)
    if action == "fresh" and folder.exists() and not is_empty(folder):
        _clear(stage, folder, reason, log)
    elif action != "fresh" or reason != "not run yet":
        log(f"[{stage.name}] {reason}")
    (folder / DONE).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    mark(folder, "stage")
    log(f"[{stage.name}] {'resuming' if action in ('resume', 'extend') else 'running'}")
    begin = time.time()
    record = {**_record(stage, outputs, run_id, layout.root), **({"extended_from": lineage} if lineage else {})}
    _write(folder / STARTED, record)
    stage.run(stage.inputs(layout), folder, stage.settings)
    made = sorted(set(os.listdir(folder)) - set(BOOKKEEPING))
    output = digest({"hash": record["hash"], "extended_from": lineage}) if lineage else record["hash"]
    _write(folder / DONE, {**record, "seconds": round(time.time() - begin, 1), "outputs": made,
                           "output": output, "instance": uuid.uuid4().hex[:12]})
    log(f"[{stage.name}] done in {time.time() - begin:.1f} s" + (
        f" (continues a finished run of {describe_extension(lineage)})" if lineage else ""))


def describe_extension(lineage: list[dict]) -> str:
    """'max_updates 20, then 30': the budgets of the finished runs an extended stage continues."""
    return ", then ".join(", ".join(f"{k} {v}" for k, v in step.get("budget", {}).items()) for step in lineage)


def _follow(stages: list[Stage], layout: WorkLayout, forced: int, until: str | None, run_id: str,
            poll: float = 2.0) -> list[str]:
    """A non-zero torchrun worker: wait for worker 0's stages of this run, join the training and
    shared ones."""
    outputs, ran = {}, []
    for index, stage in enumerate(stages):
        folder = layout.stage(stage.name)
        hash_ = stage_hash(stage, outputs)
        while True:
            done, started = read_record(folder / DONE) or {}, read_record(folder / STARTED) or {}
            current = done.get("hash") == hash_ and not redone_inputs(stage.reads, done, layout.root)
            if current and (index < forced or done.get("run") == run_id):
                break  # skipped or finished by worker 0
            if (stage.resumable or stage.shared) and started.get("run") == run_id and started.get("hash") == hash_:
                stage.run(stage.inputs(layout), folder, stage.settings)  # joins worker 0 (DDP, or its shard)
                ran.append(stage.name)
                while (read_record(folder / DONE) or {}).get("run") != run_id:
                    time.sleep(poll)  # worker 0 writes the record this worker's next stage reads
                break
            time.sleep(poll)
        outputs[stage.name] = output_of(read_record(folder / DONE))
        if stage.name == until:
            break
    return ran

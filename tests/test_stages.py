"""The stage engine: done stages are skipped, changed settings redo a stage and all after it."""
import os
from dataclasses import dataclass, field

import pytest

from clustering.ownership import NotOurs

from pipelines.declaration import Stage
from pipelines.run_status import describe
from pipelines.stages import run_stages
from pretrain.typed_settings import BUDGET


@dataclass(frozen=True)
class Kind:
    kind: str = "mfcc"


@dataclass(frozen=True)
class Units:
    units: int = 100


@dataclass(frozen=True)
class Nothing:
    pass


@dataclass(frozen=True)
class Updates:
    updates: int = field(default=10, metadata=BUDGET)


def make_stages(calls, units=100, crash_in=None, updates=10):
    def step(name):
        def run(inputs, out, settings):
            calls.append(name)
            (out / "partial").write_text("x")
            if name == crash_in:
                raise KeyboardInterrupt  # killed mid-stage
            (out / "out").write_text(name)
        return run
    return [
        Stage("features", step("features"), Kind()),
        Stage("kmeans", step("kmeans"), Units(units), reads=("features",)),
        Stage("labels", step("labels"), Nothing(), reads=("kmeans", "features")),
        Stage("train", step("train"), Updates(updates), reads=("labels",), resumable=True),
    ]


def test_rerun_after_completion_does_nothing(tmp_path):
    calls = []
    assert run_stages(make_stages(calls), tmp_path, log=lambda m: None) == ["features", "kmeans", "labels", "train"]
    assert run_stages(make_stages(calls), tmp_path, log=lambda m: None) == []
    assert [row[1] for row in describe(tmp_path)] == ["done"] * 4


def test_changing_units_redoes_kmeans_and_after_but_not_features(tmp_path):
    calls = []
    run_stages(make_stages(calls), tmp_path, log=lambda m: None)
    assert run_stages(make_stages(calls, units=500), tmp_path, log=lambda m: None) == ["kmeans", "labels", "train"]


def test_killed_stage_is_redone_from_scratch_and_run_completes(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_stages(calls, crash_in="labels"), tmp_path, log=lambda m: None)
    stopped = "stopped before finishing (crash or kill); rerun to continue"
    assert [row[1] for row in describe(tmp_path)] == ["done", "done", stopped, "pending"]
    assert run_stages(make_stages(calls), tmp_path, log=lambda m: None) == ["labels", "train"]
    assert (tmp_path / "labels" / "out").read_text() == "labels"


def test_resumable_stage_keeps_its_folder_after_a_crash(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_stages(calls, crash_in="train"), tmp_path, log=lambda m: None)
    (tmp_path / "train" / "checkpoint").write_text("update 30")
    run_stages(make_stages(calls), tmp_path, log=lambda m: None)
    assert (tmp_path / "train" / "checkpoint").exists()  # continued, not wiped


def test_until_and_from(tmp_path):
    calls = []
    assert run_stages(make_stages(calls), tmp_path, until="kmeans", log=lambda m: None) == ["features", "kmeans"]
    assert run_stages(make_stages(calls), tmp_path, start="kmeans", log=lambda m: None) == ["kmeans", "labels", "train"]
    with pytest.raises(ValueError, match="unknown stage 'kmean'"):
        run_stages(make_stages(calls), tmp_path, until="kmean")


def test_status_tells_a_running_stage_from_a_stopped_one(tmp_path):
    seen = []

    def look(folder):
        seen.append(dict((name, state) for name, state, _ in describe(tmp_path)))

    stages = make_stages([])
    stages[1] = Stage("kmeans", lambda inputs, out, settings: look(out), Units(), reads=("features",))
    run_stages(stages, tmp_path, log=lambda m: None)
    assert seen[0]["kmeans"].startswith(f"running in process {os.getpid()} on ")
    assert seen[0]["features"] == "done" and seen[0]["labels"] == "pending"


def test_a_stage_redone_alone_puts_everything_after_it_out_of_date_and_the_next_run_redoes_them(tmp_path):
    calls = []
    run_stages(make_stages(calls), tmp_path, log=lambda m: None)
    run_stages(make_stages(calls), tmp_path, start="kmeans", until="kmeans", log=lambda m: None)
    states = dict((name, state) for name, state, _ in describe(tmp_path))
    assert states == {"features": "done", "kmeans": "done",
                      "labels": "done, out of date: kmeans was redone since",
                      "train": "done, out of date: labels is out of date"}
    log = []
    assert run_stages(make_stages(calls), tmp_path, log=log.append) == ["labels", "train"]
    assert "[labels] input kmeans was redone since this stage ran" in log
    assert [row[1] for row in describe(tmp_path)] == ["done"] * 4
    (aside,) = (tmp_path / "superseded").iterdir()  # the trained stage was moved aside, not deleted
    assert (aside / "out").read_text() == "train"


def test_from_after_until_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--from labels comes after --until kmeans: nothing would run"):
        run_stages(make_stages([]), tmp_path, start="labels", until="kmeans")
    assert not any(tmp_path.iterdir())


def test_a_work_folder_of_someone_else_is_refused_before_any_stage(tmp_path):
    calls = []
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "notes.txt").write_text("mine")
    with pytest.raises(NotOurs, match=r"work_dir: .* holds files hubert did not write \(labels/\); nothing was "
                                      r"changed"):
        run_stages(make_stages(calls), tmp_path, log=lambda m: None)
    assert calls == [] and sorted(p.name for p in tmp_path.rglob("*")) == ["labels", "notes.txt"]


def test_a_folder_named_like_a_stage_that_hubert_did_not_make_is_refused_before_any_stage(tmp_path):
    calls = []
    run_stages(make_stages(calls), tmp_path, until="kmeans", log=lambda m: None)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "notes.txt").write_text("mine")
    with pytest.raises(NotOurs, match=r"labels: is a folder hubert did not make \(notes.txt\), where the labels "
                                      r"stage keeps its output; nothing was changed"):
        run_stages(make_stages(calls), tmp_path, start="features", log=lambda m: None)
    assert calls == ["features", "kmeans"] and (tmp_path / "labels" / "notes.txt").read_text() == "mine"


def test_a_file_a_user_put_into_a_finished_stage_folder_is_moved_aside_with_it_not_deleted(tmp_path):
    calls = []
    run_stages(make_stages(calls), tmp_path, log=lambda m: None)
    (tmp_path / "kmeans" / "draft.md").write_text("my notes")
    log = []
    run_stages(make_stages(calls, units=500), tmp_path, log=log.append)
    (aside,) = [p for p in (tmp_path / "superseded").iterdir() if p.name.startswith("kmeans")]
    assert (aside / "draft.md").read_text() == "my notes"
    assert any("(it holds draft.md, which its last run did not write)" in line for line in log)


def test_an_export_stage_redone_is_moved_aside_whole(tmp_path):
    calls = []

    def stages(units):
        return make_stages(calls, units=units)[:2] + [
            Stage("export", lambda inputs, out, settings: (out / "model.bin").write_text(f"units {units}"),
                  Nothing(), reads=("kmeans",), keep=True)]

    run_stages(stages(100), tmp_path, log=lambda m: None)
    run_stages(stages(500), tmp_path, log=lambda m: None)
    (aside,) = [p for p in (tmp_path / "superseded").iterdir() if p.name.startswith("export-")]
    assert (aside / "model.bin").read_text() == "units 100"
    assert (tmp_path / "export" / "model.bin").read_text() == "units 500"


def test_an_extended_run_says_so_and_what_reads_it_differs_from_a_fresh_run_of_the_larger_budget(tmp_path):
    import json

    def stages(updates):
        return make_stages([], updates=updates) + [Stage("scan", lambda i, o, s: None, Nothing(), reads=("train",))]

    log = []
    run_stages(stages(10), tmp_path / "a", log=lambda m: None)
    run_stages(stages(20), tmp_path / "a", log=log.append)
    assert "[train] schedule changed (updates 10 -> 20): continuing from the newest checkpoint" in log
    assert any(line.startswith("[train] done in") and line.endswith("(continues a finished run of updates 10)")
               for line in log)
    extended = json.loads((tmp_path / "a" / "train" / "DONE.json").read_text())
    assert [step["budget"] for step in extended["extended_from"]] == [{"updates": 10}]
    assert dict((name, state) for name, state, _ in describe(tmp_path / "a"))["train"] == \
        "done (extended: continues a finished run of updates 10)"
    run_stages(stages(20), tmp_path / "b", log=lambda m: None)  # a fresh run with the larger budget
    fresh = json.loads((tmp_path / "b" / "train" / "DONE.json").read_text())
    assert fresh["hash"] == extended["hash"] and fresh["output"] != extended["output"]
    scans = [json.loads((tmp_path / w / "scan" / "DONE.json").read_text())["hash"] for w in ("a", "b")]
    assert scans[0] != scans[1]
    assert run_stages(stages(20), tmp_path / "a", log=lambda m: None) == []  # the extended run stays done

"""The stage engine: done stages are skipped, changed settings redo a stage and all after it."""
import pytest

from pipelines.stages import Stage, describe, run_stages


def make_stages(calls, units=100, crash_in=None):
    def step(name):
        def run(folder):
            calls.append(name)
            (folder / "partial").write_text("x")
            if name == crash_in:
                raise KeyboardInterrupt  # killed mid-stage
            (folder / "out").write_text(name)
        return run
    return [
        Stage("features", step("features"), {"kind": "mfcc"}),
        Stage("kmeans", step("kmeans"), {"units": units}, after=("features",)),
        Stage("labels", step("labels"), {}, after=("kmeans", "features")),
        Stage("train", step("train"), {"updates": 10}, after=("labels",), resumable=True),
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
    assert [row[1] for row in describe(tmp_path)] == ["done", "done", "started, not finished", "pending"]
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

"""`hubert run reproduce-gpu` on the CPU, shrunk by overrides: two held-out splits, iteration 2's
layer chosen by the it1 scan on valid, and a report that answers on test in its first lines."""
import json
from pathlib import Path

import pytest

from clustering.manifest import read_manifest
from pipelines.cli import main

SHRINK = ["corpus.hours=0.05", "valid_percent=0.2", "test_percent=0.2", "iteration1.model=tiny",
          "iteration2.model=tiny", "iteration1.train.max_updates=20", "iteration2.train.max_updates=20",
          "iteration1.train.save_every=10", "iteration2.train.save_every=10", "iteration1.kmeans_percent=1.0",
          "iteration2.kmeans_percent=1.0"]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    work = tmp_path_factory.mktemp("reproduce") / "work"
    assert main(["run", "reproduce-gpu", f"work_dir={work}", *SHRINK]) == 0
    return work


def _uids(work: Path, split: str) -> set[str]:
    manifest = read_manifest(work / "data" / f"{split}.tsv")
    return {manifest.utterance_id(i) for i in range(len(manifest))}


def test_two_held_out_splits_with_their_own_alignments(reproduced):
    valid, test, train = (_uids(reproduced, s) for s in ("valid", "test", "train"))
    assert valid and test and not (valid & test) and not (train & (valid | test))
    aligned = {line.split("\t")[0] for line in (reproduced / "data" / "test.phn.tsv").read_text().splitlines()}
    assert aligned == test
    labels = json.loads((reproduced / "it1-labels" / "labels.json").read_text())
    assert labels["lines"]["test"] == len(test)  # every teacher labels the report split too


def test_iteration_two_learns_from_the_layer_the_scan_chose_on_valid(reproduced):
    scan = json.loads((reproduced / "it1-scan" / "scan.json").read_text())
    newest = scan["by_update"][str(scan["chosen"]["update"])]
    assert scan["chosen"]["update"] == 20 and sorted(scan["by_update"]) == ["10", "20"]
    assert str(scan["chosen"]["layer"]) == max(newest["valid"], key=newest["valid"].get)
    assert set(newest) == {"valid", "test"}
    teacher = json.loads((reproduced / "it2-kmeans" / "teacher.json").read_text())
    assert teacher["features"] == f"layer{scan['chosen']['layer']}"


def test_report_answers_in_its_first_lines_on_the_test_split(reproduced):
    quality = json.loads((reproduced / "quality" / "quality.json").read_text())
    rows = quality["headline"]
    assert quality["split"] == "test" and [row["name"] for row in rows] == ["MFCC", "iteration-1 model",
                                                                           "iteration-2 model"]
    scan = json.loads((reproduced / "it1-scan" / "scan.json").read_text())
    assert rows[1]["layer"] == scan["chosen"]["layer"] and rows[1]["update"] == scan["chosen"]["update"]
    assert rows[1]["pnmi"] == pytest.approx(scan["chosen"]["test"])  # the scan measures rows as the report does
    for row in rows:  # the shrunk test split (a few utterances) is too small for any interval
        assert row["utterances"]["pnmi"] == quality["utterances"] < 10 and row["pnmi_ci"] == [None, None]
        assert 0 <= row["abx_within"] <= 1 and 0 <= row["per"]
        assert row["abx_across"] is not None  # the built-in corpus knows its speakers
        assert row["kmeans"]["units"] == 100 and row["kmeans"]["seconds"] == rows[0]["kmeans"]["seconds"]
    assert rows[0]["kmeans"]["frames"] > rows[1]["kmeans"]["frames"] == rows[2]["kmeans"]["frames"]  # 100 vs 50 Hz
    assert quality["rises"] == dict.fromkeys(("pnmi", "abx_within", "abx_across", "per"), "not distinguishable")
    for step in quality["differences"]:
        low, high = step["pnmi"]["ci"]
        assert step["pnmi"]["verdict"] != "rises" or low > 0
    lines = (reproduced / "quality" / "report.md").read_text().splitlines()
    assert "test split" in lines[0]
    assert [line.split(" | ")[0] for line in lines[4:7]] == ["| MFCC", "| iteration-1 model", "| iteration-2 model"]
    assert f"{rows[1]['pnmi']:.3f}" in lines[5] and f"{rows[2]['pnmi']:.3f}" in lines[6]
    assert f"**{quality['rises']['pnmi']}**" in lines[8]
    assert [p["update"] for p in quality["curves"]["it2"]] == [10, 20]
    assert (reproduced / "quality" / "pnmi_over_training.png").read_bytes()[:4] == b"\x89PNG"
    items = (reproduced / "quality" / quality["abx"]["item_file"]).read_text().splitlines()
    assert quality["abx"]["item_file"] == "abx/test.item" and len(items) == quality["abx"]["items"] + 1
    assert items[0] == "#file onset offset #phone prev-phone next-phone speaker"


def test_the_runs_summary_prints_the_same_table(reproduced):
    from pipelines.run_config import load_config
    from pipelines.summary import summary

    text = summary(reproduced)
    report = (reproduced / "quality" / "report.md").read_text().splitlines()
    quality = json.loads((reproduced / "quality" / "quality.json").read_text())
    for line in report[2:7]:  # the table
        assert "  " + line in text.splitlines()
    assert f"PNMI {quality['rises']['pnmi']}" in text

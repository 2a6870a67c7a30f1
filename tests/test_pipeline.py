"""`hubert run` end to end: exports load, reruns skip, changes redo what they must, kills resume exactly."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines.cli import main
from pipelines.run_config import load_config
from pipelines import iterations
from pipelines.iterations import build_stages
from pipelines.stages import BOOKKEEPING, run_stages

ROOT = Path(__file__).resolve().parent.parent
TINY = ["corpus.hours=0.02", "corpus.languages=en,fr", "valid_percent=0.3", "iteration1.model=tiny",
        "iteration2.model=tiny", "iteration1.num_units=20", "iteration2.num_units=20", "iteration2.layer=1",
        "iteration1.kmeans_percent=1.0", "iteration2.kmeans_percent=1.0", "scan_checkpoints=true", "scan_units=20",
        "export.labels=yes,no",
        "iteration1.train={max_updates=20, save_every=10, valid_every=10, warmup_updates=5}",
        "iteration2.train={max_updates=20, save_every=10, valid_every=10, warmup_updates=5}"]


def overrides(work):
    return [f"work_dir={work}"] + TINY


OPENED: dict[str, set[str]] = {}  # stage -> the top-level entries of the work folder it opened
_WATCHING: list[tuple[str, str]] = []  # (work folder, stage) while a stage runs


def _audit(event, args):
    if event != "open" or not _WATCHING or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    root, stage = _WATCHING[-1]
    path = os.path.abspath(os.fsdecode(args[0]))
    if path.startswith(root + os.sep) and os.path.basename(path) not in BOOKKEEPING:
        OPENED.setdefault(stage, set()).add(path[len(root) + 1:].split(os.sep)[0])


sys.addaudithook(_audit)


def _watched(root: str, name: str, fn):
    def run(*args):
        _WATCHING.append((root, name))
        try:
            return fn(*args)
        finally:
            _WATCHING.pop()
    return run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished demo run (tiny), every file its stages opened recorded in OPENED."""
    work = tmp_path_factory.mktemp("run") / "work"
    real = iterations.build_stages

    def watched_stages(config):
        stages = real(config)
        for stage in stages:
            stage.run = _watched(str(work), stage.name, stage.run)
            stage.refresh = stage.refresh and _watched(str(work), stage.name, stage.refresh)
        return stages

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(iterations, "build_stages", watched_stages)
        assert main(["run", str(ROOT / "pipelines" / "configs" / "demo.toml"), *overrides(work)]) == 0
    return work


def test_every_stage_opens_exactly_the_stages_it_declares(finished):
    config = load_config(ROOT / "pipelines" / "configs" / "demo.toml", overrides(finished))
    wrong = [f"{stage.name}: declares {sorted(stage.reads)}, opened {sorted(OPENED.get(stage.name, set()))}"
             for stage in build_stages(config)
             if OPENED.get(stage.name, set()) - {stage.name} != set(stage.reads)]
    assert wrong == [] and len(OPENED) == 13


def last_weights(work, iteration):
    found = sorted((work / f"it{iteration}-train" / "checkpoints").glob("update_*.pt"))
    return torch.load(found[-1], map_location="cpu", weights_only=True)["model"]


def test_end_to_end_run_exports_models_transformers_loads(finished, capsys):
    from transformers import HubertForCTC, HubertForSequenceClassification, HubertModel

    for name, cls in (("encoder", HubertModel), ("ctc", HubertForCTC), ("classification", HubertForSequenceClassification)):
        model, info = cls.from_pretrained(finished / "export" / name, output_loading_info=True)
        assert not info["unexpected_keys"]
        assert all(k.startswith(("lm_head", "projector", "classifier")) for k in info["missing_keys"])
    from transformers import Wav2Vec2CTCTokenizer
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(finished / "export" / "ctc")
    texts = [line.split("\t")[1] for line in (finished / "data" / "transcripts.tsv").read_text().splitlines()]
    characters = set("".join(texts)) - {" ", "|"}
    assert list(tokenizer.get_vocab()) == ["<pad>", "<s>", "</s>", "<unk>", "|"] + sorted(characters)
    one, two = (json.loads((finished / f"it{i}-labels" / "labels.json").read_text()) for i in (1, 2))
    assert one["frames"] == [[400, 160]] and one["label_rate"] == 100
    assert two["frames"] == [[10, 5]] + [[3, 2]] * 4 + [[2, 2]] * 2 and two["label_rate"] == 50
    report = (finished / "quality" / "it1" / "report.md").read_text()
    assert "PNMI" in report and (finished / "quality" / "it1" / "pnmi_per_layer.png").exists()
    quality = json.loads((finished / "quality" / "it1" / "quality.json").read_text())
    by_update = quality["layer_pnmi_by_update"]
    assert list(by_update) == ["10", "20"] and all(0 <= v <= 1 for s in by_update.values() for v in s.values())
    assert quality["layer_pnmi"] == by_update["20"]  # the final model is the newest checkpoint
    assert (finished / "quality" / "it1" / "pnmi_by_update.png").read_bytes()[:4] == b"\x89PNG"
    assert "agreement" in (finished / "quality" / "it2" / "quality.json").read_text()
    main(["status", str(finished)])
    assert capsys.readouterr().out.count(" done") == 13  # with it1-scan and it2-scan


def test_the_reports_mfcc_row_is_what_hubert_quality_measures(finished, tmp_path):
    """The quality stage and `hubert quality --features mfcc` are one function on the same inputs;
    every row's k-means saw the same train utterances and seconds."""
    data = finished / "data"
    assert main(["quality", "--features", "mfcc", "--manifest", str(data / "valid.tsv"),
                 "--fit-manifest", str(data / "train.tsv"), "--alignments", str(data / "valid.phn.tsv"),
                 "--fit-alignments", str(data / "train.phn.tsv"), "--speakers", str(data / "speakers.tsv"),
                 "--num-units", "20", "--out", str(tmp_path / "q")]) == 0
    alone = json.loads((tmp_path / "q" / "quality.json").read_text())
    run = json.loads((finished / "quality" / "quality.json").read_text())
    assert run["split"] == alone["split"] == "valid" and alone["headline"] == run["headline"][:1]
    assert (tmp_path / "q" / "abx" / "valid.item").read_text() == (finished / "quality" / "abx" / "valid.item").read_text()
    kmeans = [row["kmeans"] for row in run["headline"]]
    assert len(kmeans) == 3 and all(k["seconds"] == kmeans[0]["seconds"] > 0 for k in kmeans)
    assert kmeans[0]["frames"] > kmeans[1]["frames"] == kmeans[2]["frames"]  # MFCC 100 Hz, layers 50 Hz


def test_rerun_after_completion_does_nothing(finished):
    config = load_config(ROOT / "pipelines" / "configs" / "demo.toml", overrides(finished))
    assert run_stages(build_stages(config), finished, log=lambda m: None) == []


def test_moving_the_work_folder_changes_no_stage(finished, tmp_path):
    import shutil
    work = tmp_path / "moved"
    shutil.copytree(finished, work, symlinks=True)
    config = load_config(ROOT / "pipelines" / "configs" / "demo.toml", overrides(work))
    assert run_stages(build_stages(config), work, log=lambda m: None) == []
    assert (work / "data" / "train.tsv").read_text().splitlines()[0] == str((work / "data" / "wav").resolve())


def test_changing_units_redoes_kmeans_and_after_but_not_features(finished, tmp_path):
    import shutil
    work = tmp_path / "work"
    shutil.copytree(finished, work)
    config = load_config(ROOT / "pipelines" / "configs" / "demo.toml", overrides(work) + ["iteration1.num_units=12"])
    ran = run_stages(build_stages(config), work, until="it1-labels", log=lambda m: None)
    assert ran == ["it1-kmeans", "it1-labels"]
    assert "12 units" in (work / "it1-labels" / "labels.json").read_text().replace('"num_units": 12', "12 units")


KILL = """
import os, signal, sys
from pretrain import trainer
real = trainer.save_checkpoint
def save_then_die(state, directory, update, keep_last):
    path = real(state, directory, update, keep_last)
    if update == 10 and "it1-train" in str(directory):
        os.kill(os.getpid(), signal.SIGKILL)
    return path
trainer.save_checkpoint = save_then_die
from pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_run_killed_in_pretraining_finishes_like_an_uninterrupted_one(finished, tmp_path):
    work = tmp_path / "work"
    args = ["run", str(ROOT / "pipelines" / "configs" / "demo.toml"), *overrides(work)]
    killed = subprocess.run([sys.executable, "-c", KILL, *args], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (work / "it1-train" / "DONE.json").exists()
    assert main(args) == 0
    for iteration in (1, 2):
        a, b = last_weights(work, iteration), last_weights(finished, iteration)
        # two iterations of training after a resume: float noise only, no different data or labels
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5


CUSTOM_CONV = "[[32, 10, 5], [32, 5, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]]"


def test_a_custom_conv_stack_trains_end_to_end(tmp_path):
    work = tmp_path / "work"
    custom = [f"iteration{i}.model_settings={{conv_layers={CUSTOM_CONV}}}" for i in (1, 2)]
    quick = [t.replace("max_updates=20", "max_updates=4") for t in TINY]
    assert main(["run", "demo", f"work_dir={work}", *quick, *custom, "--until", "it2-train"]) == 0
    state = torch.load(work / "it2-train" / "checkpoints" / "update_0000004.pt", weights_only=True)
    assert [layer[1] for layer in state["model_config"]["conv_layers"]] == [10, 5, 3, 3, 3, 2, 2]

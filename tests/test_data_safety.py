"""Never touch a folder we did not make: each case a newcomer tried, the user's bytes checked afterwards."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from clustering.ownership import MARKER
from pipelines.cli import main
from pipelines.run_config import load_config
from pipelines.workdir import move_aside, work_lock
from pretrain.model import HubertPretrain
from pretrain.presets import model_preset
from pretrain.model_io import model_state
from test_pipeline import ROOT, TINY
from tone_corpus import make_tone_corpus

DEMO = str(ROOT / "pipelines" / "configs" / "demo.toml")


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def error_line(capsys, command="run"):
    """The one error line a command ended with (progress bars may come before it), without its prefix."""
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith(f"hubert {command}: error: "), err
    return last[len(f"hubert {command}: error: "):]


def wavs(folder, count=3, seconds=1.0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        sf.write(folder / f"u{i}.wav", 0.1 * rng.standard_normal(int(16000 * seconds)).astype(np.float32), 16000)


def tiny_checkpoint(path, units=20):
    torch.manual_seed(0)
    torch.save(model_state(HubertPretrain(model_preset("tiny"), [units])), path)
    return path


# --- 1, 2, 7: the work folder -------------------------------------------------------------------------

def test_a_work_folder_inside_the_audio_folder_is_refused_and_the_audio_is_kept(tmp_path, capsys):
    wavs(tmp_path / "audio8" / "spk1" / "data")
    before = snapshot(tmp_path / "audio8")
    code = main(["run", DEMO, f"work_dir={tmp_path / 'audio8' / 'spk1'}", f"audio_dir={tmp_path / 'audio8'}", *TINY])
    assert code == 2
    assert error_line(capsys) == (f"work_dir: {tmp_path}/audio8/spk1 lies inside audio_dir {tmp_path}/audio8; stages "
                                  "write and remove folders there, so keep the work folder outside your inputs "
                                  "(choose another work_dir)")
    assert snapshot(tmp_path / "audio8") == before


@pytest.mark.parametrize("mine", ["data/notes.txt", "export/finetuned.bin", "quality/draft.md", "notes.txt"])
def test_a_folder_holding_the_users_files_is_not_a_work_folder(tmp_path, capsys, mine):
    wavs(tmp_path / "audio")
    (tmp_path / "proj2" / mine).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "proj2" / mine).write_text("mine")
    code = main(["run", DEMO, f"work_dir={tmp_path / 'proj2'}", f"audio_dir={tmp_path / 'audio'}", *TINY])
    assert code == 2 and "holds files hubert did not write" in error_line(capsys)
    assert snapshot(tmp_path / "proj2") == {mine: b"mine"}


def test_a_user_folder_named_like_a_stage_in_our_work_folder_is_refused_before_the_first_stage(tmp_path, capsys):
    wavs(tmp_path / "audio", count=4, seconds=2.5)
    work = tmp_path / "w"
    args = ["run", DEMO, f"work_dir={work}", f"audio_dir={tmp_path / 'audio'}", *TINY]
    assert main(args + ["--until", "data"]) == 0
    (work / "export").mkdir()
    (work / "export" / "finetuned.bin").write_bytes(b"weights")
    data = snapshot(work / "data")
    capsys.readouterr()
    assert main(args + ["--from", "data"]) == 2
    assert error_line(capsys) == (f"{work}/export: is a folder hubert did not make (finetuned.bin), where the "
                                  f"export stage keeps its output; nothing was changed: move it out of {work}, "
                                  "or choose another work_dir")
    assert snapshot(work / "export") == {"finetuned.bin": b"weights"} and snapshot(work / "data") == data


def test_a_tilde_in_a_path_setting_is_the_home_folder_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    assert load_config(DEMO, ["work_dir=~/runs/x"]).work_dir == str(tmp_path / "home" / "runs" / "x")
    (tmp_path / "home" / "audio").mkdir()
    assert load_config(DEMO, ["audio_dir=~/audio"]).audio_dir == str(tmp_path / "home" / "audio")
    with pytest.raises(ValueError, match=f"work_dir: {tmp_path}/home/audio/w lies inside audio_dir"):
        load_config(DEMO, ["work_dir=~/audio/w", "audio_dir=~/audio"])
    assert not (tmp_path / "~").exists()


# --- 3: exports ---------------------------------------------------------------------------------------

def test_export_never_mixes_with_an_earlier_export_and_never_writes_over_a_foreign_model(tmp_path, capsys):
    from transformers import HubertModel

    checkpoint = tiny_checkpoint(tmp_path / "a.pt")
    transcripts = tmp_path / "t.tsv"
    transcripts.write_text("u1\tabc\n")
    out = tmp_path / "out"
    assert main(["export", str(checkpoint), str(out), "--head", "ctc", "--transcripts", str(transcripts)]) == 0
    earlier = snapshot(out)
    assert "vocab.json" in earlier
    capsys.readouterr()
    assert main(["export", str(checkpoint), str(out)]) == 0
    (aside,) = tmp_path.glob("out-replaced-*")
    assert f"moved the earlier export in {out} to {aside}" in capsys.readouterr().out
    assert snapshot(aside) == earlier  # the whole earlier export, tokenizer included
    assert not (out / "vocab.json").exists() and json.loads((out / "config.json").read_text())["architectures"] == \
        ["HubertModel"]
    HubertModel.from_pretrained(out)
    capsys.readouterr()

    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    (foreign / "model.safetensors").write_bytes(b"their weights")
    assert main(["export", str(checkpoint), str(foreign)]) == 2
    assert error_line(capsys, "export") == (f"OUT_DIR: {foreign} holds files hubert did not write (config.json, "
                                            "model.safetensors); nothing was changed: give a new or empty folder, or "
                                            "move those files yourself")
    assert snapshot(foreign) == {"config.json": b"{}", "model.safetensors": b"their weights"}


def test_init_from_our_own_tiny_export_starts_a_run(tmp_path):
    from pretrain.presets import train_preset
    from pretrain.train_config import apply_overrides
    from pretrain.trainer import train

    assert main(["export", str(tiny_checkpoint(tmp_path / "a.pt")), str(tmp_path / "hf")]) == 0
    root, labels = make_tone_corpus(tmp_path / "tones", num_units=20)
    config = apply_overrides(train_preset("tiny"), dict(max_tokens=64000, min_sample_size=8000, num_workers=0,
                                                        max_updates=1, valid_every=1000))
    result = train(root, [labels], tmp_path / "run", model_preset("tiny"), config, init_from=tmp_path / "hf",
                   log=lambda m: None)
    assert result.update == 1
    small = model_preset("small")
    with pytest.raises(ValueError, match=r"its encoder has conv_layers = .*this run's model .*; choose the preset"):
        train(root, [labels], tmp_path / "run2", small, config, init_from=tmp_path / "hf", log=lambda m: None)


# --- 4: prune ------------------------------------------------------------------------------------------

def test_prune_refuses_a_folder_that_is_not_a_work_folder_and_leaves_no_lock(tmp_path, capsys):
    (tmp_path / "mine" / "superseded" / "old").mkdir(parents=True)
    (tmp_path / "mine" / "superseded" / "old" / "thesis.tex").write_text("mine")
    assert main(["prune", str(tmp_path / "mine")]) == 2
    assert error_line(capsys, "prune") == (f"{tmp_path}/mine: not the work folder of a `hubert run` (it has "
                                           f"neither hubert's {MARKER} nor stages.json); nothing was removed")
    assert snapshot(tmp_path / "mine") == {"superseded/old/thesis.tex": b"mine"}


def test_prune_removes_only_what_a_rerun_moved_aside(tmp_path, capsys):
    wavs(tmp_path / "audio", count=4, seconds=2.5)
    work = tmp_path / "w"
    assert main(["run", DEMO, f"work_dir={work}", f"audio_dir={tmp_path / 'audio'}", *TINY, "--until", "data"]) == 0
    move_aside(work / "data")  # as a rerun moves a training or export folder
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("mine")
    os.symlink(tmp_path / "elsewhere", work / "superseded" / "linked")
    (work / "superseded" / "notes.txt").write_text("mine")
    (old,) = [p for p in (work / "superseded").iterdir() if p.name.startswith("data-")]  # the moved data stage
    capsys.readouterr()
    assert main(["prune", str(work)]) == 0
    out = capsys.readouterr().out
    assert f"removed {old}" in out and f"left {work}/superseded/linked: hubert did not put it there" in out
    assert sorted(p.name for p in (work / "superseded").iterdir()) == ["linked", "notes.txt"]
    assert snapshot(tmp_path / "elsewhere") == {"keep.txt": b"mine"}


# --- 5: manifests ---------------------------------------------------------------------------------------

def test_manifest_into_a_common_voice_folder_does_not_overwrite_its_metadata(tmp_path, capsys):
    cv = tmp_path / "cv"
    wavs(cv / "clips")
    (cv / "train.tsv").write_text("client_id\tpath\tsentence\nabc\tu0.mp3\thello\n")
    before = snapshot(cv)
    assert main(["manifest", str(cv), str(cv)]) == 2
    assert "holds files hubert did not write (clips/, train.tsv)" in error_line(capsys, "manifest")
    assert snapshot(cv) == before
    assert main(["manifest", str(cv), str(tmp_path / "m")]) == 0
    assert main(["manifest", str(cv), str(tmp_path / "m")]) == 0  # our own folder: rewritten
    assert (tmp_path / "m" / "train.tsv").exists()


# --- 6, 16, 22: hubert train ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


QUICK = ["min_sample_size=8000", "max_tokens=64000", "num_workers=0", "valid_every=1000", "warmup_updates=2"]


def hubert_train(root, labels, out, *extra):
    return main(["train", "--manifest-dir", str(root), "--labels", str(labels), "--out", str(out),
                 "--model", "tiny", *QUICK, *extra])


def test_train_refuses_to_resume_a_run_with_other_labels_or_settings(tones, tmp_path, capsys):
    root, labels = tones
    assert hubert_train(root, labels, tmp_path / "run", "max_updates=4", "save_every=2") == 0
    other = tmp_path / "labels16"
    shutil.copytree(labels, other)
    info = json.loads((other / "labels.json").read_text())
    (other / "labels.json").write_text(json.dumps({**info, "num_units": 16}))
    (other / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(16)))
    before = snapshot(tmp_path / "run" / "checkpoints")
    capsys.readouterr()
    assert hubert_train(root, other, tmp_path / "run", "max_updates=6") == 2
    assert "its checkpoints were trained on other inputs (labels.set1.num_units 8 -> 16" in error_line(capsys, "train")
    assert hubert_train(root, labels, tmp_path / "run", "max_updates=6", "seed=7") == 2
    assert "(train.seed 1337 -> 7); resume with the same" in error_line(capsys, "train")
    assert hubert_train(root, labels, tmp_path / "run", "max_updates=2") == 2
    assert error_line(capsys, "train") == (f"{tmp_path}/run/checkpoints: its newest checkpoint is at update 4, past "
                                           "max_updates=2; give max_updates above 4 to continue it, or train into "
                                           "another folder to start over")
    assert snapshot(tmp_path / "run" / "checkpoints") == before
    assert hubert_train(root, labels, tmp_path / "run", "max_updates=6") == 0  # the same inputs continue


def test_train_refuses_a_busy_folder_a_foreign_one_and_a_pipeline_stage(tones, tmp_path, capsys):
    root, labels = tones
    assert hubert_train(root, labels, tmp_path / "busy", "max_updates=1") == 0
    with work_lock(tmp_path / "busy"):
        assert hubert_train(root, labels, tmp_path / "busy", "max_updates=1") == 2
    assert f"busy: in use by process {os.getpid()}" in error_line(capsys, "train")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "ch1.tex").write_text("mine")
    assert hubert_train(root, labels, tmp_path / "thesis", "max_updates=1") == 2
    assert "holds files hubert did not write (ch1.tex)" in error_line(capsys, "train")
    stage = tmp_path / "w" / "it1-train"
    stage.mkdir(parents=True)
    (stage / "STARTED.json").write_text(json.dumps({"hash": "abc", "run": "x"}))
    assert hubert_train(root, labels, stage, "max_updates=1") == 2
    assert error_line(capsys, "train") == (f"--out: {stage} is the it1-train stage of the `hubert run` in "
                                           f"{tmp_path}/w; continue it with that `hubert run` command, or give "
                                           "another --out")
    assert snapshot(tmp_path / "thesis") == {"ch1.tex": b"mine"}


def test_resuming_with_labels_of_another_unit_count_is_one_line(tones, tmp_path):
    from pretrain.presets import train_preset
    from pretrain.train_config import apply_overrides
    from pretrain.trainer import train

    root, labels = tones
    config = apply_overrides(train_preset("tiny"), dict(max_tokens=64000, min_sample_size=8000, num_workers=0,
                                                        max_updates=2, valid_every=1000))
    train(root, [labels], tmp_path / "run", model_preset("tiny"), config, log=lambda m: None)
    (tmp_path / "run" / "inputs.json").unlink()  # a run folder from before the inputs record
    state = torch.load(tmp_path / "run" / "checkpoints" / "update_0000002.pt", weights_only=True)
    state["num_units"] = [16]
    torch.save(state, tmp_path / "run" / "checkpoints" / "update_0000002.pt")
    with pytest.raises(ValueError, match=r"its checkpoints predict \[16\] units per label set, this run's labels "
                                         r"have \[8\]"):
        train(root, [labels], tmp_path / "run", model_preset("tiny"), config, log=lambda m: None)


# --- 8, 25: status ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("{not json", "unreadable"), ("[1, 2]", 'expected {"stages": [stage names]}')])
def test_status_of_a_broken_stage_list_names_the_file(tmp_path, capsys, text, message):
    (tmp_path / "stages.json").write_text(text)
    assert main(["status", str(tmp_path)]) == 2
    line = error_line(capsys, "status")
    assert line.startswith(f"{tmp_path}/stages.json: {message}") and "rerun the `hubert run` command" in line


# --- 11, 12: said early ------------------------------------------------------------------------------------

def test_rejected_files_are_counted_and_named_by_the_data_stage(tmp_path, capsys):
    wavs(tmp_path / "audio", count=4, seconds=2.5)
    (tmp_path / "audio" / "empty.wav").write_bytes(b"")
    (tmp_path / "audio" / "short.wav").write_bytes(b"RIFF")
    assert main(["run", DEMO, f"work_dir={tmp_path / 'w'}", f"audio_dir={tmp_path / 'audio'}", *TINY,
                 "--until", "data"]) == 0
    out = capsys.readouterr().out
    assert f"[data] 2 of 6 files left out (empty.wav: " in out and f"{tmp_path}/w/data/rejected.tsv" in out


def test_a_teacher_folder_without_weights_is_refused_before_the_first_stage(tmp_path, capsys):
    teacher = tmp_path / "hf"
    assert main(["export", str(tiny_checkpoint(tmp_path / "a.pt")), str(teacher)]) == 0
    (teacher / "model.safetensors").unlink()
    capsys.readouterr()
    assert main(["run", DEMO, f"work_dir={tmp_path / 'w'}", *TINY, f"iteration2.teacher_hf={teacher}"]) == 2
    assert error_line(capsys) == (f"iteration2.teacher_hf: {teacher} has no model.safetensors or pytorch_model.bin "
                                  "(weights); give a folder saved by transformers' save_pretrained")
    assert not (tmp_path / "w").exists()


def test_alignments_of_other_audio_are_refused_right_after_the_data_stage(tmp_path, capsys):
    wavs(tmp_path / "audio", count=6, seconds=2.5)
    aligned = tmp_path / "phones.tsv"
    aligned.write_text("".join(f"u{i}\t{','.join(['a'] * 100)}\n" for i in range(6)))  # 1 s, the audio is 2.5 s
    code = main(["run", DEMO, f"work_dir={tmp_path / 'w'}", f"audio_dir={tmp_path / 'audio'}", *TINY,
                 f"alignments={aligned}", "valid_percent=0.5"])
    assert code == 2
    assert "has 100 frames at 100 Hz, but its audio (40000 samples) has 248; these alignments belong to other " \
           "audio" in error_line(capsys)
    assert (tmp_path / "w" / "data" / "DONE.json").exists() and not (tmp_path / "w" / "it1-features").exists()


# --- 23: the command line ----------------------------------------------------------------------------------

def test_debug_before_the_command_and_demo_stage_ranges(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "status", str(tmp_path)])
    assert main(["demo", f"work_dir={tmp_path / 'w'}", *TINY, "--until", "it1-kmeans", "--from", "it1-labels"]) == 2
    assert error_line(capsys, "demo") == ("--from it1-labels comes after --until it1-kmeans: nothing would run; "
                                          "give --from a stage at or before it1-kmeans")
    assert main(["demo", f"work_dir={tmp_path / 'w'}", *TINY, "--until", "data"]) == 0
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if not p.name.startswith(".")) == \
        ["data", "run.lock", "stages.json"]

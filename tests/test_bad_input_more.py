"""Issue 20's late or unclear failures, each reproduced: every one ends in one line naming the file or
setting and the fix, before any work where it can be, and leaves the user's files as they were."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from clustering.features import dump_features, mfcc_features, shard_paths
from clustering.kmeans import KMeansInfo, KMeansTeacher, fit_kmeans
from clustering.labels import read_labels
from clustering.manifest import ManifestError, read_manifest, write_manifest
from clustering.ownership import claim
from pipelines.cli import main
from pipelines.run_config import load_config
from pretrain.checkpoint import latest_path, save_checkpoint
from pretrain.model import HubertPretrain
from pretrain.presets import model_preset
from pretrain.model_io import load_encoder, model_state
from pretrain.typed_settings import SettingError
from test_bad_input import cli_error, features, labelled, quality  # noqa: F401 (fixtures)
from tone_corpus import make_tone_corpus

ROOT = Path(__file__).resolve().parent.parent


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a user would lose."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def tiny_train(tmp_path, corpus, *overrides) -> list[str]:
    root, labels = corpus
    return ["train", "--manifest-dir", str(root), "--labels", str(labels), "--out", str(tmp_path / "out"),
            "--model", "tiny", "max_tokens=64000", "min_sample_size=8000", "valid_every=1000", "num_workers=0",
            *overrides]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


# --- 10: a byte-order mark, audio moved or deleted after the manifest ------------------------------

def test_a_byte_order_mark_is_dropped_from_manifests_labels_and_alignments(tiny_manifest, labelled, tmp_path):
    manifest = tmp_path / "train.tsv"
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())  # as Notepad saves it
    assert read_manifest(manifest).root == tmp_path / "audio"
    assert main(["features", str(manifest), str(tmp_path / "f")]) == 0
    km = labelled / "train.km"
    rows = read_labels(km)
    km.write_bytes(b"\xef\xbb\xbf" + km.read_bytes())
    assert [list(r) for r in read_labels(km)] == [list(r) for r in rows]
    from clustering.alignments import read_tsv_alignments

    (tmp_path / "a.tsv").write_bytes("\ufeffu0\tsil,a,a\n".encode())
    assert read_tsv_alignments(tmp_path / "a.tsv") == {"u0": ["sil", "a", "a"]}


def test_audio_moved_or_deleted_after_the_manifest_is_named_before_features(tiny_manifest, tmp_path, capsys):
    manifest, out = str(tmp_path / "train.tsv"), tmp_path / "f"
    (tmp_path / "audio").rename(tmp_path / "moved")
    assert cli_error(["features", manifest, str(out)], capsys) == (
        f"{manifest}:1: audio folder {tmp_path / 'audio'} no longer exists (the audio moved after this manifest "
        "was written); write its new folder on line 1, or rescan the audio with `hubert manifest`")
    assert not out.exists()
    (tmp_path / "moved").rename(tmp_path / "audio")
    (tmp_path / "audio" / "u3.wav").unlink()
    assert cli_error(["features", manifest, str(out)], capsys) == (
        f"{tmp_path / 'audio' / 'u3.wav'} (manifest line 5): audio file not found; it was moved or deleted "
        "after the manifest was written: put it back, or rescan the audio folder with `hubert manifest`")
    assert [p.name for p in out.iterdir()] == [".hubert.json"]  # our marker, no partial shard


def test_audio_deleted_during_training_is_one_line_from_a_loader_worker(tmp_path, capsys):
    root, labels = make_tone_corpus(tmp_path / "tones")
    (root / "audio" / "train5.wav").unlink()
    message = cli_error(tiny_train(tmp_path, (root, labels), "num_workers=1", "max_updates=30"), capsys)
    assert message.startswith(f"{root / 'audio' / 'train5.wav'} (manifest line 7): audio file not found; ")


# --- 13: file names a manifest line cannot hold -----------------------------------------------------

def test_names_with_a_tab_or_line_break_are_rejected_and_never_written(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    wav = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    for name in ("good1.wav", "good2.wav", "tab\there.wav", "new\nline.wav", "carriage\rreturn.wav"):
        sf.write(audio / name, wav, 16000)
    before = files(audio)
    assert main(["manifest", str(audio), str(tmp_path / "m"), "--valid-percent", "0.5"]) == 0
    rejected = (tmp_path / "m" / "rejected.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in rejected) == ["carriage\\rreturn.wav", "new\\nline.wav",
                                                                 "tab\\there.wav"]
    assert all(line.endswith("; rename it") for line in rejected)
    listed = [p for split in ("train", "valid") for p in read_manifest(tmp_path / "m" / f"{split}.tsv").paths]
    assert sorted(listed) == ["good1.wav", "good2.wav"] and files(audio) == before
    with pytest.raises(ManifestError, match=r"x.tsv: cannot list 'a\\tb.wav': its name holds \\t"):
        write_manifest(tmp_path / "x.tsv", audio, [("good1.wav", 8000), ("a\tb.wav", 8000)])
    assert not list(tmp_path.glob("x.tsv*"))


# --- 14: a full disk --------------------------------------------------------------------------------

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from pipelines.cli import main
sys.exit(main({argv!r}))
"""


def run_limited(argv: list[str], limit: int) -> subprocess.CompletedProcess:
    """`hubert ARGV` in a process that cannot write files larger than `limit` bytes."""
    return subprocess.run([sys.executable, "-c", LIMITED.format(limit=limit, argv=argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tiny_manifest, tmp_path):
    out = tmp_path / "f"
    done = run_limited(["features", str(tmp_path / "train.tsv"), str(out)], limit=50_000)
    assert done.returncode == 2, done.stderr[-2000:]
    npy = out / "train_0_1.npy"
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"hubert features: error: {npy}: not written: the file would exceed the file-size limit (ulimit -f) (")
    assert "free on its disk); free some space or choose a folder on another disk" in done.stderr
    assert "Traceback" not in done.stderr and [p.name for p in out.iterdir()] == [".hubert.json"]


def test_a_checkpoint_save_on_a_full_disk_is_one_line(tmp_path):
    root, labels = make_tone_corpus(tmp_path / "tones")
    argv = tiny_train(tmp_path, (root, labels), "max_updates=2", "save_every=2")
    done = run_limited(argv, limit=600_000)  # the logs fit, the 1.3 MB checkpoint does not
    assert done.returncode == 2, done.stderr[-2000:]
    checkpoints = tmp_path / "out" / "checkpoints"
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"hubert train: error: {checkpoints / 'update_0000002.pt'}: not written: the file would exceed")
    assert "enforce fail" not in done.stderr
    assert [p.name for p in checkpoints.iterdir()] == ["best.pt"]  # weights only: small enough; no .tmp left


# --- 17: exporting a file that is not a checkpoint --------------------------------------------------

def test_export_of_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys):
    toml, npy, pickled = tmp_path / "my.toml", tmp_path / "teacher.npy", tmp_path / "object.pt"
    toml.write_text('work_dir = "w"\n')
    np.save(npy, np.zeros((4, 39), np.float32))
    torch.save({"settings": argparse_namespace()}, pickled)
    fix = ("not a checkpoint written by `hubert train` nor a Hugging Face folder; give a training folder's "
           "checkpoints/update_*.pt or best.pt, or a folder written by `hubert export`")
    for path in (toml, npy, pickled):
        assert cli_error(["export", str(path), str(tmp_path / "out")], capsys) == f"{path}: {fix}"
    assert not (tmp_path / "out").exists()


def argparse_namespace():
    import argparse

    return argparse.Namespace(lr=1e-3)


# --- 18: settings the model or the machine cannot run -----------------------------------------------

def test_a_crop_shorter_than_one_frame_is_refused_before_training(tones, tmp_path, capsys):
    assert cli_error(tiny_train(tmp_path, tones, "max_sample_size=100"), capsys) == (
        "max_sample_size: 100 samples give no frame of the model: its CNN needs 400 samples (25 ms) per frame; "
        "set at least 400")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SettingError, match=r"^iteration2.train.min_sample_size: 300 samples give no frame"):
        load_config("demo", ["iteration2.train.min_sample_size=300"])


def test_cuda_without_a_gpu_is_refused_before_any_work(tones, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_error(tiny_train(tmp_path, tones, "device=cuda"), capsys) == (
        "device: cuda asked for, but torch sees no GPU (no CUDA device, or no driver); use auto (the GPU when "
        "there is one) or cpu")
    assert not (tmp_path / "out").exists()
    for override, key in (("device=cuda", "device"), ("iteration2.train.device=cuda", "iteration2.train.device")):
        with pytest.raises(SettingError, match=rf"^{key}: cuda asked for, but torch sees no GPU"):
            load_config("demo", [override, f"work_dir={tmp_path / 'w'}"])


# --- 19, 20, 21: a capped corpus written round by round, progress of long steps ----------------------

def test_corpus_hours_are_capped_before_anything_is_written(tmp_path, capsys):
    assert cli_error(["corpus", str(tmp_path / "c"), "--hours", "1e9"], capsys).startswith(
        "--hours 1e+09 is above the built-in corpus's cap of 100 h")
    assert not (tmp_path / "c").exists()
    with pytest.raises(SettingError, match=r"^corpus.hours: 1e\+09 is above the built-in corpus's cap"):
        load_config("demo", ["corpus.hours=1e9"])


def test_the_corpus_is_written_round_by_round_with_progress(tmp_path, monkeypatch, capsys):
    from clustering.synthetic import corpus

    monkeypatch.setattr(corpus, "RENDER_ROUND", 3)
    on_disk, render = [], corpus._synthesise_all
    monkeypatch.setattr(corpus, "_synthesise_all",
                        lambda specs, jobs: on_disk.append(len(list(tmp_path.rglob("*.wav")))) or render(specs, jobs))
    corpus.make_corpus(tmp_path, hours=0.02, languages=("en",), valid_percent=0.2)
    assert len(on_disk) >= 3 and on_disk == [3 * k for k in range(len(on_disk))]  # earlier rounds already written
    assert "synthesise" in capsys.readouterr().err


def test_kmeans_shows_seeding_and_iteration_progress_without_changing_the_result(capsys):
    import faiss

    from clustering.kmeans import _best_seeding

    feats = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    teacher = fit_kmeans(feats, 20, "faiss", seed=3)
    err = capsys.readouterr().err
    assert "k-means++ seeding (2 tries on 640 frames)" in err and "40/40" in err
    assert "k-means iterations (3000 frames)" in err and "15/15" in err
    reference = faiss.Kmeans(8, 20, niter=15, seed=3, max_points_per_centroid=3000 // 20 + 1, verbose=False)
    reference.train(feats, init_centroids=_best_seeding(feats, 20, 3))  # one faiss call of 15 iterations
    np.testing.assert_array_equal(teacher.centroids, reference.centroids)


# --- 24, 28: hubert quality on a .km file ------------------------------------------------------------

def test_quality_of_a_km_file_reads_labels_json_beside_it_and_trailing_blank_lines(labelled, tmp_path, capsys):
    km = labelled / "train.km"
    km.write_text(km.read_text() + "\n\n")  # an editor's blank lines at the end
    assert main(quality(tmp_path, km)) == 0  # no --label-rate or --num-units: labels.json beside it
    assert json.loads((tmp_path / "q" / "quality.json").read_text())["utterances"] == 7
    lines = km.read_text().splitlines()
    km.write_text("\n".join(lines[:3] + [""] + lines[4:]) + "\n")  # a blank line in the middle: no labels
    assert cli_error(quality(tmp_path, km), capsys).startswith(f"{km}:4: utterance u3.wav has 0 labels")


# --- 25: config files that are not UTF-8, TOML or JSON -----------------------------------------------

def test_malformed_configs_name_the_file_the_place_and_the_fix(labelled, features, tmp_path, capsys):
    toml = tmp_path / "my.toml"
    toml.write_text('work_dir = "w"\n[corpus\nhours = 1\n')
    assert cli_error(["run", str(toml)], capsys).startswith(f"{toml}: not valid TOML (Expected ']' at the end of "
                                                            "a table declaration (at line 2, column 8)); fix it")
    toml.write_text('work_dir = "w"\n', encoding="utf-16")
    assert cli_error(["run", str(toml)], capsys) == f"{toml}: not UTF-8 text (UTF-16); re-save it as UTF-8"
    teacher = tmp_path / "km.npy"
    KMeansTeacher(np.zeros((4, 39), np.float32), KMeansInfo(4, 39, "test")).save(teacher)
    teacher.with_suffix(".json").write_text('{"num_units": 4,')
    assert cli_error(["labels", str(tmp_path), str(tmp_path / "feat"), str(teacher), str(tmp_path / "l")],
                     capsys).startswith(f"{teacher.with_suffix('.json')}:1:17: not valid JSON (Expecting")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "hubert"')
    assert cli_error(["export", str(hf), str(tmp_path / "out")], capsys).startswith(
        f"{hf / 'config.json'}:1:24: not valid JSON (Expecting ',' delimiter); re-save the model")
    from pipelines.scan_stage import read_scan

    (tmp_path / "it1-scan").mkdir()
    (tmp_path / "it1-scan" / "scan.json").write_text("{}")
    with pytest.raises(ValueError, match=r"scan.json: not a layer scan \(KeyError: 'by_update'\); rerun the scan "
                                         r"with --from it1-scan"):
        read_scan(tmp_path / "it1-scan" / "scan.json")


# --- 27: a valid split too short to validate on -------------------------------------------------------

def test_a_valid_split_of_short_files_says_what_is_true(tones, tmp_path):
    from pretrain.presets import train_preset
    from pretrain.train_config import apply_overrides
    from pretrain.trainer import train

    root, labels = tones
    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("audio"))
    valid = read_manifest(root / "valid.tsv")
    write_manifest(data / "valid.tsv", valid.root, [(valid.paths[0], valid.sizes[0])])
    config = apply_overrides(train_preset("tiny"), dict(max_tokens=64000, min_sample_size=valid.sizes[0] + 1,
                                                        num_workers=0, max_updates=2, valid_every=1))
    messages = []
    train(data, [labels], tmp_path / "out", model_preset("tiny"), config, log=messages.append)
    note = [m for m in messages if m.startswith("note: no validation")]
    assert note == [f"note: no validation: the 1 utterance(s) of {data / 'valid.tsv'} are all shorter than "
                    f"min_sample_size = {valid.sizes[0] + 1} samples ({(valid.sizes[0] + 1) / 16000:g} s), so "
                    "there is no valid loss and no best.pt (lower min_sample_size or hold out longer audio)"]


# --- 29: concurrent dumps, --percent, a truncated newest checkpoint -------------------------------------

def test_two_feature_dumps_of_one_shard_at_once_both_succeed(tiny_manifest, tmp_path):
    out, manifest = tmp_path / "f", tmp_path / "train.tsv"
    other = []

    def first_then_another_dump(wav):  # the second job starts and finishes while this one is writing
        if not other:
            other.append(subprocess.run([sys.executable, "-m", "pipelines.cli", "features", str(manifest),
                                         str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300))
        return mfcc_features(wav)

    claim(out, "features", "OUT_DIR")  # as `hubert features` does, before it dumps
    dump_features(tiny_manifest, first_then_another_dump, out, "train")
    assert other[0].returncode == 0, other[0].stderr[-2000:]
    dump_features(tiny_manifest, mfcc_features, tmp_path / "alone", "train")
    for ours, alone in zip(shard_paths(out, "train", 0, 1), shard_paths(tmp_path / "alone", "train", 0, 1)):
        assert ours.read_bytes() == alone.read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [".hubert.json", "train_0_1.len", "train_0_1.npy"]


def test_kmeans_arguments_are_checked_by_name(features, tmp_path, capsys):
    feat, out = str(tmp_path / "feat"), str(tmp_path / "km.npy")
    assert cli_error(["kmeans", feat, "train", out, "--percent", "10"], capsys).startswith(
        "--percent must be in (0, 1], got 10: it is a fraction of the utterances")
    assert cli_error(["kmeans", feat, "train", out, "--num-units", "1"], capsys) == (
        "--num-units must be at least 2, got 1")


def test_a_truncated_newest_checkpoint_is_skipped_by_later_stages(tmp_path):
    state = model_state(HubertPretrain(model_preset("tiny"), [8]))
    for update in (10, 20):
        save_checkpoint({**state, "update": update}, tmp_path, update, keep_last=3)
    newest = tmp_path / "update_0000020.pt"
    newest.write_bytes(newest.read_bytes()[:100_000])  # cut off by a crash or a full disk
    kept, messages = newest.read_bytes(), []
    assert latest_path(tmp_path, messages.append) == tmp_path / "update_0000010.pt"
    assert messages == [f"warning: {newest} is unreadable (File is not a zip file); using the previous checkpoint"]
    assert load_encoder(latest_path(tmp_path, messages.append)).config == model_preset("tiny")
    assert newest.read_bytes() == kept  # reported, never deleted

"""Manifests: bad files are rejected and listed, malformed lines are reported with their number."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clustering.manifest import ManifestError, read_manifest, shard_range
from clustering.audio_folder import find_audio, scan_audio, walk_audio, write_scan
from pipelines.cli import main


@pytest.fixture
def audio_dir(tmp_path):
    root = tmp_path / "audio"
    (root / "spk1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        sf.write(root / "spk1" / f"utt{i}.flac", 0.1 * rng.standard_normal(1600 * (i + 1)), 16000)
    (root / "broken.wav").write_bytes(b"not audio at all")
    sf.write(root / "nan.wav", np.full(800, np.nan, np.float32), 16000, subtype="FLOAT")
    (root / "notes.txt").write_text("ignored: not audio")
    return root


def test_ten_files_two_bad_give_eight_lines_and_two_rejections(audio_dir, tmp_path):
    out = tmp_path / "manifest"
    assert main(["manifest", str(audio_dir), str(out), "--valid-percent", "0", "--jobs", "2"]) == 0
    train = read_manifest(out / "train.tsv")
    assert len(train) == 8 and len(read_manifest(out / "valid.tsv")) == 0
    assert train.root == audio_dir.resolve()
    assert sorted(train.sizes) == [1600 * (i + 1) for i in range(8)]
    rejected = (out / "rejected.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in rejected) == ["broken.wav", "nan.wav"]


def test_split_is_deterministic_for_a_seed(audio_dir):
    a = scan_audio(audio_dir, valid_percent=0.5, seed=3, jobs=1)
    b = scan_audio(audio_dir, valid_percent=0.5, seed=3, jobs=2)
    assert a.train == b.train and a.valid == b.valid
    assert len(a.train) + len(a.valid) == 8 and a.valid


def test_strict_stops_at_the_first_bad_file(audio_dir, tmp_path, capsys):
    assert main(["manifest", str(audio_dir), str(tmp_path / "m"), "--strict", "--jobs", "1"]) == 2
    assert "broken.wav" in capsys.readouterr().err


def test_malformed_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("/data\na.flac\t16000\nb.flac 16000\nc.flac\t32000\n")
    with pytest.raises(ManifestError, match=r"train.tsv:3: expected 'relpath<TAB>num_samples'"):
        read_manifest(path)


def test_written_manifest_round_trips(audio_dir, tmp_path):
    result = scan_audio(audio_dir, valid_percent=0.0, jobs=1)
    write_scan(result, audio_dir, tmp_path)
    manifest = read_manifest(tmp_path / "train.tsv")
    assert list(zip(manifest.paths, manifest.sizes)) == result.train
    assert manifest.utterance_id(0) == "spk1/utt0"


KILL_SCAN = """
import os, signal
from clustering import audio_folder, scan_journal
scan_journal.JOURNAL_CHUNK = 4  # flushed every 4 files
real, calls = audio_folder._probe, []
def probe_then_die(path):
    calls.append(path)
    if len(calls) == 7:  # killed while decoding the 7th file: 6 checked, 4 of them flushed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path)
audio_folder._probe = probe_then_die
audio_folder.scan_audio({audio!r}, valid_percent=0.3, jobs=1, journal={journal!r})
"""


def test_a_scan_killed_halfway_resumes_without_decoding_again_what_it_had_checked(audio_dir, tmp_path, monkeypatch):
    from clustering import audio_folder

    journal = tmp_path / "scan-journal.tsv"
    killed = subprocess.run([sys.executable, "-c", KILL_SCAN.format(audio=str(audio_dir), journal=str(journal))],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(journal.read_text().splitlines()) == 4
    real, decoded = audio_folder._probe, []
    monkeypatch.setattr(audio_folder, "_probe", lambda path: decoded.append(Path(path).name) or real(path))
    resumed = scan_audio(audio_dir, valid_percent=0.3, jobs=1, journal=journal)
    assert len(decoded) == 10 - 4  # the 4 files journalled before the kill are not decoded again
    assert resumed == scan_audio(audio_dir, valid_percent=0.3, jobs=1)  # the same result as a clean scan
    decoded.clear()
    os.utime(audio_dir / "spk1" / "utt3.flac")  # touched: decoded again, the rest is not
    assert scan_audio(audio_dir, valid_percent=0.3, jobs=1, journal=journal) == resumed
    assert decoded == ["utt3.flac"]
    assert len(journal.read_text().splitlines()) == 10


def rejected_reasons(out_dir):
    """{relpath: reason} of rejected.tsv, checking its header."""
    lines = (out_dir / "rejected.tsv").read_text().splitlines()
    assert lines[0] == "path\treason"
    return dict(line.split("\t") for line in lines[1:])


def test_audio_shorter_than_one_frame_is_rejected_with_its_length(audio_dir, tmp_path):
    sf.write(audio_dir / "short.wav", np.zeros(100, np.float32), 16000)
    sf.write(audio_dir / "one_frame.wav", np.zeros(400, np.float32), 16000)
    write_scan(scan_audio(audio_dir, valid_percent=0, jobs=1), audio_dir, tmp_path)
    assert rejected_reasons(tmp_path)["short.wav"] == "100 samples, shorter than one 25 ms frame (400 samples)"
    assert "one_frame.wav" in read_manifest(tmp_path / "train.tsv").paths


def test_links_are_followed_once_and_loops_and_dangling_links_rejected(audio_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sf.write(elsewhere / "far.flac", 0.1 * np.ones(1600), 16000)
    (audio_dir / "linked").symlink_to(elsewhere)
    (audio_dir / "spk1" / "up").symlink_to(audio_dir)  # a loop
    (audio_dir / "again").symlink_to(audio_dir / "spk1")  # the same folder twice
    (audio_dir / "gone.wav").symlink_to(tmp_path / "missing.wav")
    (audio_dir / "ping").symlink_to(audio_dir / "pong")
    (audio_dir / "pong").symlink_to(audio_dir / "ping")
    found, rejected = walk_audio(audio_dir)
    assert found == find_audio(audio_dir) == sorted(found)
    assert "linked/far.flac" in found and len(found) == 11
    reasons = dict(rejected)
    assert reasons["spk1/up"].startswith("link loop: points back to the audio folder itself")
    assert reasons["again"].startswith("same folder as spk1, already scanned")
    assert reasons["gone.wav"] == f"dangling link to {tmp_path / 'missing.wav'}; fix or remove the link"
    assert reasons["ping"].startswith("link loop") and reasons["pong"].startswith("link loop")
    out = tmp_path / "m"
    assert main(["manifest", str(audio_dir), str(out), "--valid-percent", "0", "--jobs", "1"]) == 0
    assert set(rejected_reasons(out)) == {"broken.wav", "nan.wav", "spk1/up", "again", "gone.wav", "ping", "pong"}
    assert "linked/far.flac" in read_manifest(out / "train.tsv").paths


def test_a_small_folder_still_gets_a_valid_utterance(tmp_path):
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.zeros(1600, np.float32), 16000)
    for seed in range(5):
        result = scan_audio(tmp_path, valid_percent=0.01, seed=seed, jobs=1)
        assert len(result.valid) == 1 and len(result.train) == 1
        assert result.valid == scan_audio(tmp_path, valid_percent=0.01, seed=seed, jobs=1).valid
    assert not scan_audio(tmp_path, valid_percent=0, jobs=1).valid


def test_first_line_must_be_the_audio_root(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("a.flac\t16000\nb.flac\t32000\n")
    with pytest.raises(ManifestError, match=r"train.tsv:1: first line must be the audio root folder, "
                                            r"got 'a.flac\\t16000'; add it"):
        read_manifest(path)


def test_manifests_without_a_final_newline_read_fine(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("/data")
    assert read_manifest(path).root == Path("/data") and len(read_manifest(path)) == 0
    path.write_text("/data\na.flac\t16000")
    assert read_manifest(path).paths == ("a.flac",)


def test_a_folder_given_as_manifest_is_named(tmp_path):
    with pytest.raises(ManifestError, match=r"is a folder; give the manifest file in it \(e.g. .*train.tsv\)"):
        read_manifest(tmp_path)


def test_line_numbers_survive_blank_lines_and_subsets(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("/data\na.flac\t16000\n\nb.flac\t16000\nc.flac\t16000\n")
    manifest = read_manifest(path)
    assert [manifest.line_number(i) for i in range(3)] == [2, 4, 5]
    assert manifest.subset([2, 0]).line_number(0) == 5


def test_shard_ranges_follow_fairseq_rounding():
    # fairseq: start = round(N / nshard * rank), end = round(N / nshard * (rank + 1))
    ranges = [shard_range(10, r, 4) for r in range(4)]
    assert [(r.start, r.stop) for r in ranges] == [(0, 2), (2, 5), (5, 8), (8, 10)]
    assert sum(len(shard_range(1001, r, 7)) for r in range(7)) == 1001


def test_every_command_has_help_with_an_example():
    from pipelines.cli import build_parser
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert "manifest" in commands
    for name, sub in commands.items():
        text = sub.format_help()
        assert "example:" in text and f"hubert {name}" in text, name
    top = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "examples:" in top.stdout


def test_split_off_test_moves_a_seeded_share_of_valid_with_its_alignments(tmp_path):
    from clustering.heldout import split_off_test
    from clustering.manifest import write_manifest

    entries = [(f"u{i}.wav", 16_000 + i) for i in range(10)]
    write_manifest(tmp_path / "valid.tsv", tmp_path, entries)
    (tmp_path / "valid.phn.tsv").write_text("".join(f"u{i}\tp{i},p{i}\n" for i in range(10)))
    assert split_off_test(tmp_path, 0.3, seed=4) == 3
    valid, test = read_manifest(tmp_path / "valid.tsv"), read_manifest(tmp_path / "test.tsv")
    assert sorted(zip(valid.paths + test.paths, valid.sizes + test.sizes)) == sorted(entries)
    assert len(test) == 3 and not set(valid.paths) & set(test.paths)
    for split, manifest in (("valid", valid), ("test", test)):
        lines = (tmp_path / f"{split}.phn.tsv").read_text().splitlines()
        assert [line.split("\t")[0] for line in lines] == [manifest.utterance_id(i) for i in range(len(manifest))]
    write_manifest(tmp_path / "valid.tsv", tmp_path, entries)
    split_off_test(tmp_path, 0.3, seed=4)
    assert read_manifest(tmp_path / "test.tsv").paths == test.paths  # the seed fixes the split
    write_manifest(tmp_path / "valid.tsv", tmp_path, entries[:2])
    assert split_off_test(tmp_path, 0.01, seed=0) == 1  # two held out: one each, never an empty valid


def test_a_run_on_the_users_audio_with_test_percent_holds_out_two_disjoint_splits(audio_dir, tmp_path):
    from pipelines.iterations import build_stages
    from pipelines.layout import WorkLayout
    from pipelines.run_config import load_config

    config = load_config("demo", [f"work_dir={tmp_path / 'work'}", f"audio_dir={audio_dir}", "valid_percent=0.25",
                                  "test_percent=0.25", "jobs=1"])
    data = build_stages(config)[0]
    assert data.settings.test_percent == 0.25
    (tmp_path / "data").mkdir()
    data.run(data.inputs(WorkLayout(tmp_path)), tmp_path / "data", data.settings)
    train, valid, test = (read_manifest(tmp_path / "data" / f"{s}.tsv") for s in ("train", "valid", "test"))
    assert len(train) + len(valid) + len(test) == 8 and len(valid) >= 1 and len(test) >= 1
    assert len(set(train.paths) | set(valid.paths) | set(test.paths)) == 8
    assert "test_percent" not in build_stages(load_config("demo", [f"audio_dir={audio_dir}"]))[0].settings_record()

"""Manifests: bad files are rejected and listed, malformed lines are reported with their number."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from clustering.manifest import ManifestError, read_manifest, shard_range
from clustering.scan import scan_audio, write_scan
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

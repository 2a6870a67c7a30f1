"""Every mistake is caught early with one clear line: `hubert <command>: error: <what and the fix>`."""
import json

import numpy as np
import pytest

from clustering.features import dump_features, mfcc_features
from clustering.kmeans import KMeansInfo, KMeansTeacher
from clustering.labels import LabelInfo, write_labels
from clustering.path_checks import PathError, input_folder, output_file, output_folder
from pipelines.cli import main


def cli_error(argv: list[str], capsys) -> str:
    """The error line of a `hubert` command that must fail with status 2 and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    prefix = f"hubert {argv[0]}: error: "
    assert "Traceback" not in err and last.startswith(prefix), err
    return last[len(prefix):]


# --- output and input paths of the wrong kind ---------------------------------------------------

def test_path_helpers_name_the_path_and_the_fix(tmp_path):
    assert output_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PathError, match=r"file: is a file; give a folder"):
        output_folder(tmp_path / "file")
    with pytest.raises(PathError, match=r"file/out: .*file is a file, not a folder"):
        output_folder(tmp_path / "file" / "out")
    with pytest.raises(PathError, match=r"a: is a folder; give a file name"):
        output_file(tmp_path / "a")
    assert output_file(tmp_path / "new" / "km.npy").parent.is_dir()
    with pytest.raises(FileNotFoundError, match=r"nowhere: feature folder not found"):
        input_folder(tmp_path / "nowhere", "feature folder")
    with pytest.raises(PathError, match=r"file: is a file; give a feature folder"):
        input_folder(tmp_path / "file", "feature folder")


@pytest.fixture
def features(tiny_manifest, tmp_path):
    """MFCC shards of tiny_manifest in tmp_path/feat; returns the manifest path."""
    dump_features(tiny_manifest, mfcc_features, tmp_path / "feat", "train")
    return tmp_path / "train.tsv"


def test_output_files_where_folders_are_needed(features, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    manifest, feat, teacher = str(features), str(tmp_path / "feat"), str(tmp_path / "km.npy")
    KMeansTeacher(np.zeros((4, 39), np.float32), KMeansInfo(4, 39, "test")).save(teacher)
    assert cli_error(["features", manifest, str(taken)], capsys) == f"{taken}: is a file; give a folder"
    assert cli_error(["manifest", str(tmp_path / "audio"), str(taken)], capsys).endswith("is a file; give a folder")
    assert cli_error(["corpus", str(taken), "--hours", "0.001"], capsys).endswith("is a file; give a folder")
    assert cli_error(["quality", "--labels", "x.km", "--manifest", manifest, "--out", str(taken)],
                     capsys).endswith("is a file; give a folder")
    assert cli_error(["labels", str(tmp_path), feat, teacher, str(taken / "labels")],
                     capsys) == f"{taken / 'labels'}: {taken} is a file, not a folder; give a path outside it"
    assert cli_error(["labels", manifest, feat, teacher, str(tmp_path / "l")],
                     capsys) == f"{manifest}: is a file; give a manifest folder"


def test_kmeans_output_is_checked_before_fitting(features, tmp_path, capsys, monkeypatch):
    import pipelines.commands.kmeans as command

    monkeypatch.setattr(command, "fit_kmeans", lambda *a, **k: pytest.fail("fitted before the output check"))
    feat = str(tmp_path / "feat")
    (tmp_path / "km_dir.npy").mkdir()
    (tmp_path / "file").write_text("x")
    assert cli_error(["kmeans", feat, "train", str(tmp_path / "km_dir.npy"), "--num-units", "4"],
                     capsys).startswith(f"{tmp_path / 'km_dir.npy'}: is a folder; give a file name")
    assert "file is a file, not a folder" in cli_error(["kmeans", feat, "train", str(tmp_path / "file" / "km.npy")],
                                                        capsys)
    assert "give a name ending in .npy" in cli_error(["kmeans", feat, "train", str(tmp_path / "km")], capsys)
    assert not list(tmp_path.glob("*.tmp*"))


def test_a_folder_given_as_manifest(tmp_path, capsys):
    assert "is a folder; give the manifest file in it" in cli_error(["features", str(tmp_path), str(tmp_path / "f")],
                                                                    capsys)


# --- corpus and scan settings -------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--hours", "0"], "--hours must be positive, got 0"),
    (["--hours", "-1"], "--hours must be positive, got -1"),
    (["--valid-percent", "1.5"], "--valid-percent must be in [0, 1), got 1.5"),
    (["--valid-percent", "-0.1"], "--valid-percent must be in [0, 1), got -0.1"),
])
def test_corpus_settings_are_checked_before_anything_is_written(tmp_path, capsys, argv, message):
    assert cli_error(["corpus", str(tmp_path / "c"), *argv], capsys).startswith(message)
    assert not (tmp_path / "c").exists()


def test_manifest_valid_percent_is_a_fraction(tmp_path, capsys):
    assert cli_error(["manifest", str(tmp_path), str(tmp_path / "m"), "--valid-percent", "5"],
                     capsys).startswith("--valid-percent must be in [0, 1), got 5: it is a fraction")


# --- hubert quality: labels checked against the manifest before any metric ----------------------

@pytest.fixture
def labelled(tiny_manifest, tmp_path):
    """tmp_path/lab: 100 Hz labels of tiny_manifest with ids 0..7, dictionary and labels.json."""
    rows = [np.arange(int(n * 100 / 16000)) % 8 for n in tiny_manifest.sizes]
    folder = tmp_path / "lab"
    folder.mkdir()
    write_labels(folder / "train.km", rows)
    LabelInfo(8, 100.0, lines={"train": len(rows)}).save(folder)
    return folder


def quality(tmp_path, labels, *extra) -> list[str]:
    return ["quality", "--labels", str(labels), "--manifest", str(tmp_path / "train.tsv"),
            "--out", str(tmp_path / "q"), *extra]


def test_quality_checks_line_counts(labelled, tmp_path, capsys):
    lines = (labelled / "train.km").read_text().splitlines()
    (tmp_path / "six.km").write_text("\n".join(lines[:6]) + "\n")
    message = cli_error(quality(tmp_path, tmp_path / "six.km", "--label-rate", "100", "--num-units", "8"), capsys)
    assert message.startswith(f"{tmp_path / 'six.km'}: 6 lines but the manifest has 7 utterances")
    LabelInfo(8, 100.0, lines={"train": 9}).save(labelled)
    assert cli_error(quality(tmp_path, labelled), capsys).startswith(
        f"{labelled / 'labels.json'}: lists 9 utterances for split 'train', but the manifest has 7")


def test_quality_refuses_ids_beyond_the_number_of_units(labelled, tmp_path, capsys):
    message = cli_error(quality(tmp_path, labelled, "--num-units", "4"), capsys)
    assert message.startswith(f"{labelled / 'train.km'}:1: unit id 7 outside the dictionary of 4 units")
    assert "the largest id in the file is 7" in message


def test_quality_checks_label_lengths(labelled, tmp_path, capsys):
    message = cli_error(quality(tmp_path, labelled, "--label-rate", "50"), capsys)
    assert message.startswith(f"{labelled / 'train.km'}:1: utterance u0.wav has 50 labels")


def test_compare_needs_the_same_utterances(labelled, tmp_path, capsys):
    lines = (labelled / "train.km").read_text().splitlines()
    (tmp_path / "short.km").write_text("\n".join(lines[:5]) + "\n")
    message = cli_error(quality(tmp_path, labelled, "--compare", str(tmp_path / "short.km")), capsys)
    assert message.startswith(f"{labelled / 'train.km'} has 7 lines but {tmp_path / 'short.km'} has 5 (line 6")
    (tmp_path / "halved.km").write_text("\n".join(line[: len(line) // 2] for line in lines) + "\n")
    message = cli_error(quality(tmp_path, labelled, "--compare", str(tmp_path / "halved.km")), capsys)
    assert message.startswith(f"{labelled / 'train.km'}:1 has 50 labels at 100 Hz (0.50 s) but "
                              f"{tmp_path / 'halved.km'}:1 has")
    assert not (tmp_path / "q" / "quality.json").exists()


def test_missing_alignments_are_named(labelled, tmp_path, capsys):
    missing = tmp_path / "MISSING.tsv"
    assert cli_error(quality(tmp_path, labelled, "--alignments", str(missing)), capsys).startswith(
        f"{missing}: alignments not found")


def test_malformed_labels_json_is_one_line(labelled, tmp_path, capsys):
    info = json.loads((labelled / "labels.json").read_text())
    del info["label_rate"]
    (labelled / "labels.json").write_text(json.dumps(info))
    assert cli_error(quality(tmp_path, labelled), capsys).startswith(
        f"{labelled / 'labels.json'}: missing key 'label_rate'")


def test_good_labels_still_give_a_report(labelled, tmp_path):
    assert main(quality(tmp_path, labelled, "--compare", str(labelled / "train.km"))) == 0
    result = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert result["utterances"] == 7 and result["agreement"]["nmi"] == pytest.approx(1.0)


# --- the command line itself ----------------------------------------------------------------------

def test_overrides_may_follow_options(tmp_path, monkeypatch):
    from pipelines.commands import run as run_command

    seen = {}
    monkeypatch.setattr(run_command, "run_pipeline",
                        lambda config, start=None, until=None: seen.update(config=config, until=until) or 0)
    assert main(["run", "demo", "--until", "it1-labels", f"work_dir={tmp_path}/w",
                 "iteration1.num_units=7"]) == 0
    assert seen["until"] == "it1-labels" and seen["config"].work_dir == f"{tmp_path}/w"
    assert seen["config"].iteration1.num_units == 7
    with pytest.raises(SystemExit):
        main(["run", "demo", "--until", "it1-labels", "stray"])


def test_ctrl_c_and_internal_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    from pipelines.commands import status

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(status, "run", interrupted)
    assert main(["status", "w"]) == 130
    assert capsys.readouterr().err == "hubert status: interrupted; rerun the same command to continue\n"

    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(status, "run", broken)
    assert main(["status", "w"]) == 2
    assert capsys.readouterr().err == ("hubert status: error: TypeError: unsupported operand (an internal "
                                       "error; rerun with --debug for the traceback)\n")
    with pytest.raises(TypeError):
        main(["status", "w", "--debug"])


def test_system_errors_name_the_path_and_the_fix(monkeypatch, capsys):
    import errno

    from pipelines.commands import status

    def clash(args):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", "w/data/train.tsv")

    monkeypatch.setattr(status, "run", clash)
    assert main(["status", "w"]) == 2
    assert capsys.readouterr().err == "hubert status: error: w/data/train.tsv: a file stands where a folder is needed\n"

"""Label files round-trip and every trap from the reference tools is a clear error."""
import numpy as np
import pytest

from clustering.assign import (assign_all, finish_label_dir, label_audio, merge_label_shards,
                               shard_label_path)
from clustering.features import dump_features, mfcc_features
from clustering.kmeans import fit_kmeans
from clustering.label_arrays import open_checked_labels
from clustering.labels import LabelError, LabelInfo, check_comparable, read_labels, write_labels
from clustering.feature_shards import FeatureShards


@pytest.fixture
def teacher(tiny_manifest, tmp_path):
    dump_features(tiny_manifest, mfcc_features, tmp_path / "feat", "train")
    shards = FeatureShards(tmp_path / "feat", "train")
    teacher = fit_kmeans(shards.sample(1.0), 8, features="mfcc")
    teacher.save(tmp_path / "km.npy")
    return teacher


def test_labels_round_trip_and_load_checked(tiny_manifest, teacher, tmp_path):
    shards = FeatureShards(tmp_path / "feat", "train")
    rows = assign_all(shards, teacher, len(shards))
    (tmp_path / "lab").mkdir()
    write_labels(tmp_path / "lab" / "train.km", rows)
    info = finish_label_dir(tmp_path / "lab", tmp_path / "km.npy", teacher, 100, "mfcc", {"train": tiny_manifest})
    assert info.num_units == 8 and info.lines == {"train": 7} and len(info.teacher_sha256) == 64
    loaded_info, loaded = open_checked_labels(tmp_path / "lab", "train", tiny_manifest)
    assert loaded_info == LabelInfo.load(tmp_path / "lab")
    assert all(np.array_equal(a, b) for a, b in zip(rows, loaded))
    assert (tmp_path / "lab" / "dict.km.txt").read_text().splitlines() == [f"{i} 1" for i in range(8)]


def test_on_the_fly_shards_merge_to_the_dumped_result(tiny_manifest, teacher, tmp_path):
    for rank in range(3):
        write_labels(shard_label_path(tmp_path, "train", rank, 3), label_audio(tiny_manifest, mfcc_features, teacher, rank, 3))
    merged = read_labels(merge_label_shards(tmp_path, "train", 3, tiny_manifest))
    dumped = assign_all(FeatureShards(tmp_path / "feat", "train"), teacher, 7)
    assert all(np.array_equal(a, b) for a, b in zip(merged, dumped))
    # a shard labelled with the wrong range is caught, naming it
    write_labels(shard_label_path(tmp_path, "train", 1, 3), [np.zeros(5, int)])
    with pytest.raises(LabelError, match=r"train_1_3.km: 1 lines, but shard 1/3"):
        merge_label_shards(tmp_path, "train", 3, tiny_manifest)


def make_label_dir(tmp_path, tiny_manifest, rows, rate=100, units=8):
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    write_labels(d / "train.km", rows)
    LabelInfo(units, rate).save(d)
    (d / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(units)))
    return d


def good_rows(manifest, rate=100):
    return [np.zeros(int(n * rate / 16000), np.int64) for n in manifest.sizes]


def test_line_count_mismatch_names_both_files(tiny_manifest, tmp_path):
    d = make_label_dir(tmp_path, tiny_manifest, good_rows(tiny_manifest)[:-1])
    with pytest.raises(LabelError, match=r"train.km: 6 lines but the manifest has 7"):
        open_checked_labels(d, "train", tiny_manifest)


def test_wrong_label_rate_names_the_utterance(tiny_manifest, tmp_path):
    d = make_label_dir(tmp_path, tiny_manifest, good_rows(tiny_manifest, rate=50), rate=100)
    with pytest.raises(LabelError, match=r"train.km:1: utterance u0.wav has 25 labels.*label rate"):
        open_checked_labels(d, "train", tiny_manifest)


def test_incomplete_dictionary_is_refused(tiny_manifest, tmp_path):
    d = make_label_dir(tmp_path, tiny_manifest, good_rows(tiny_manifest))
    (d / "dict.km.txt").write_text("0 1\n1 1\n")
    with pytest.raises(LabelError, match="dict.km.txt: lists 2 units, expected 0..7"):
        open_checked_labels(d, "train", tiny_manifest)


def test_unit_outside_dictionary_is_refused(tiny_manifest, tmp_path):
    rows = good_rows(tiny_manifest)
    rows[2][5] = 8
    d = make_label_dir(tmp_path, tiny_manifest, rows)
    with pytest.raises(LabelError, match=r"train.km:3: unit id 8 outside the dictionary.*largest id in the file is 8"):
        open_checked_labels(d, "train", tiny_manifest)


@pytest.mark.parametrize("text, message", [
    ('{"label_rate": 100}', r"labels.json: missing key 'num_units'"),
    ('{"num_units": 8, "label_rate": 100, "rate": 50}', r"labels.json: unknown key 'rate'"),
    ('{"num_units": "8", "label_rate": 100}', r"labels.json: key 'num_units' must be int, got '8'"),
    ('{"num_units": 8, "label_rate": 100, "lines": [7]}', r"labels.json: key 'lines' must be dict\[str, int\]"),
    ('{"num_units": 8, "label_rate": 100, "lines": {"train": "7"}}', r"labels.json: key 'lines' must map each split"),
    ('{"num_units": 0, "label_rate": 100}', r"labels.json: key 'num_units' must be positive, got 0"),
    ('{"num_units": 8, "label_rate": 100', r"labels.json:1:35: not valid JSON \(Expecting ',' delimiter\); rerun"),
    ('[8, 100]', r"labels.json: expected a JSON object"),
])
def test_malformed_labels_json_names_the_file_and_key(tmp_path, text, message):
    (tmp_path / "labels.json").write_text(text)
    with pytest.raises(LabelError, match=message):
        LabelInfo.load(tmp_path)


def test_labels_json_line_counts_must_match_the_manifest(tiny_manifest, tmp_path):
    d = make_label_dir(tmp_path, tiny_manifest, good_rows(tiny_manifest))
    LabelInfo(8, 100, lines={"train": 6, "valid": 2}).save(d)
    with pytest.raises(LabelError, match=r"labels.json: lists 6 utterances for split 'train', but the "
                                         r"manifest has 7"):
        open_checked_labels(d, "train", tiny_manifest)


def test_two_label_sets_must_cover_the_same_utterances(tmp_path):
    a = [np.zeros(100, int), np.zeros(50, int)]  # 1 s and 0.5 s at 100 Hz
    check_comparable("a.km", a, 100, "b.km", [np.zeros(49, int), np.zeros(25, int)], 50)
    with pytest.raises(LabelError, match=r"a.km has 2 lines but b.km has 1 \(line 2 is in one only\)"):
        check_comparable("a.km", a, 100, "b.km", [np.zeros(50, int)], 50)
    with pytest.raises(LabelError, match=r"a.km:2 has 50 labels at 100 Hz \(0.50 s\) but b.km:2 has 50 at 50 Hz"):
        check_comparable("a.km", a, 100, "b.km", [np.zeros(50, int), np.zeros(50, int)], 50)


def test_labels_json_records_frames_that_fit_its_rate(tmp_path):
    import json

    from clustering.labels import LabelError, LabelInfo

    LabelInfo(20, 100.0, frames=[[400, 160]]).save(tmp_path)
    assert LabelInfo.load(tmp_path).frames == [[400, 160]]
    (tmp_path / "labels.json").write_text(json.dumps({"num_units": 20, "label_rate": 50.0, "frames": [[400, 160]]}))
    with pytest.raises(LabelError, match=r"label_rate 50.0 Hz does not fit its frames \[\[400, 160\]\] \(100 Hz\)"):
        LabelInfo.load(tmp_path)

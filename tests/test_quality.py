"""Cluster-quality metrics: hand-computed values, invariances, alignment formats, the real report."""
import json

import numpy as np
import pytest

from clustering.alignments import load_alignments, read_lab, read_textgrid, segments_to_frames
from clustering.manifest import Manifest
from clustering.quality import joint_counts, pair_frames, purity_pnmi, teacher_agreement, unit_usage


def test_metrics_equal_a_hand_computed_example():
    # phones a,a,a,b / units 0,0,1,1: p = [[.5,.25],[0,.25]]
    counts = joint_counts(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), 2, 2)
    m = purity_pnmi(counts)
    assert m["phone_purity"] == pytest.approx(0.75)  # .5 + max(.25,.25)
    assert m["cluster_purity"] == pytest.approx(0.75)  # .5 + .25
    h_phone = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    mi = 0.5 * np.log(0.5 / (0.75 * 0.5)) + 0.25 * np.log(0.25 / (0.75 * 0.5)) + 0.25 * np.log(0.25 / (0.25 * 0.5))
    assert m["pnmi"] == pytest.approx(mi / h_phone)


def test_perfect_shuffled_and_permuted_labels():
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 20, 50000)
    perfect = purity_pnmi(joint_counts(phones, phones, 20, 20))
    assert perfect == pytest.approx({"phone_purity": 1.0, "cluster_purity": 1.0, "pnmi": 1.0})
    noisy = np.where(rng.random(50000) < 0.3, rng.integers(0, 20, 50000), phones)
    base = purity_pnmi(joint_counts(phones, noisy, 20, 20))
    permuted = purity_pnmi(joint_counts(phones, rng.permutation(20)[noisy], 20, 20))
    assert permuted == pytest.approx(base)
    shuffled = purity_pnmi(joint_counts(phones, rng.permutation(noisy), 20, 20))
    assert shuffled["pnmi"] < 0.01 < base["pnmi"]


def test_usage_and_agreement():
    rows = [np.array([0, 0, 1, 1, 1, 3])]
    usage = unit_usage(rows, 4)
    assert usage["dead_units"] == 1 and usage["mean_segment_frames"] == 2.0
    a = [np.array([0, 1, 2, 0])]
    assert teacher_agreement(a, 50, [np.array([5, 5, 7, 7, 9, 9, 5, 5])], 100)["nmi"] == pytest.approx(1.0)


SEGMENTS = [(0.0, 0.12, ""), (0.12, 0.2, "a"), (0.2, 0.35, "b")]


def test_every_alignment_format_gives_the_same_frames(tmp_path):
    frames = segments_to_frames(SEGMENTS)
    assert frames == ["sil"] * 12 + ["a"] * 8 + ["b"] * 15
    (tmp_path / "tg").mkdir()
    intervals = "".join(f'        intervals [{i+1}]:\n            xmin = {a}\n            xmax = {b}\n            text = "{t}"\n'
                        for i, (a, b, t) in enumerate(SEGMENTS))
    (tmp_path / "tg" / "u1.TextGrid").write_text(
        'File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = 0\nxmax = 0.35\ntiers? <exists>\nsize = 2\nitem []:\n'
        '    item [1]:\n        class = "IntervalTier"\n        name = "words"\n        xmin = 0\n        xmax = 0.35\n'
        '        intervals: size = 1\n        intervals [1]:\n            xmin = 0\n            xmax = 0.35\n            text = "ab"\n'
        '    item [2]:\n        class = "IntervalTier"\n        name = "phones"\n        xmin = 0\n        xmax = 0.35\n'
        f'        intervals: size = 3\n{intervals}')
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "u1.lab").write_text("0 1200000 sil\n1200000 2000000 a\n2000000 3500000 b\n")
    (tmp_path / "lab2").mkdir()
    (tmp_path / "lab2" / "u1.lab").write_text("0.12 sil\n0.2 a\n0.35 b\n")
    (tmp_path / "a.tsv").write_text("spk/u1\t" + ",".join(frames) + "\n")
    uids = ["spk/u1"]
    assert load_alignments(tmp_path / "a.tsv", uids)["spk/u1"] == frames
    assert load_alignments(tmp_path / "tg", uids)["spk/u1"] == frames  # found by basename
    assert load_alignments(tmp_path / "lab", uids)["spk/u1"] == frames  # HTK 100 ns units
    assert load_alignments(tmp_path / "lab2", uids, "lab")["spk/u1"] == frames  # seconds
    assert read_textgrid(tmp_path / "tg" / "u1.TextGrid")[1] == (0.12, 0.2, "a")
    assert read_lab(tmp_path / "lab2" / "u1.lab")[0] == (0.0, 0.12, "sil")


def test_rates_are_reconciled_and_mismatches_named():
    manifest = Manifest(None, ("x/u1.wav", "x/u2.wav", "x/u3.wav"), (16000, 16000, 16000))
    aligned = {"x/u1": ["a"] * 10 + ["b"] * 10, "x/u2": ["b"] * 21, "x/other": ["a"]}
    rows = [np.array([0] * 5 + [1] * 5), np.array([1] * 10), np.array([2] * 10)]  # 50 Hz
    paired = pair_frames(rows, 50, manifest, aligned)
    assert paired.utterances == 2 and paired.missing_alignment == ["x/u3"] and paired.missing_labels == 1
    assert len(paired.units) == 40  # u2: 21 phone frames trimmed to 20
    assert purity_pnmi(joint_counts(paired.phones, paired.units, 2, 3))["pnmi"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="utterance x/u1: 5 labels at 50 Hz"):
        pair_frames([np.array([0] * 5)], 50, manifest, aligned)


def test_report_on_the_builtin_corpus_with_an_mfcc_teacher(tmp_path):
    from clustering.synthetic.corpus import make_corpus
    from clustering.features import dump_features, mfcc_features
    from clustering.kmeans import fit_kmeans
    from clustering.manifest import read_manifest
    from clustering.feature_shards import FeatureShards
    from clustering.labels import write_labels
    from pipelines.cli import main

    make_corpus(tmp_path / "c", hours=0.03, languages=("en", "de", "fr"), seed=1, valid_percent=0.0)
    manifest = read_manifest(tmp_path / "c" / "train.tsv")
    dump_features(manifest, mfcc_features, tmp_path / "f", "train")
    shards = FeatureShards(tmp_path / "f", "train")
    teacher = fit_kmeans(shards.sample(1.0), 100)
    write_labels(tmp_path / "train.km", [teacher.assign(f) for f in shards])
    code = main(["quality", "--labels", str(tmp_path / "train.km"), "--manifest", str(tmp_path / "c" / "train.tsv"),
                 "--alignments", str(tmp_path / "c" / "train.phn.tsv"), "--label-rate", "100",
                 "--num-units", "100", "--out", str(tmp_path / "q")])
    assert code == 0
    result = json.loads((tmp_path / "q" / "quality.json").read_text())
    ph = result["phones"]
    assert 0.15 < ph["pnmi"] < 0.9 and 0 < ph["cluster_purity"] < ph["phone_purity"] < 1
    assert ph["missing_alignment"] == 0 and ph["aligned_utterances"] == len(manifest)
    report = (tmp_path / "q" / "report.md").read_text()
    assert f"{ph['pnmi']:.3f}" in report
    for name in ("unit_usage.png", "phone_given_unit.png"):
        assert (tmp_path / "q" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_layer_measured_as_a_row_ranks_an_informative_layer_above_a_noise_layer(tmp_path):
    """Stand-in encoder: layer 1 is the spectral peak of each 20 ms frame (which names the tone,
    i.e. the 'phone'), layer 2 is noise. One pass gives both layers; each is a row whose k-means is
    fitted on train and scored on two held-out sets, as the layer scans do."""
    from clustering.audio import CONV_STRIDE, num_model_frames
    from clustering.labels import read_labels
    from clustering.manifest import read_manifest
    from clustering.quality_budget import QualityBudget
    from clustering.row_features import layer_rows
    from clustering.row_quality import measure_row, quality_data
    from tone_corpus import make_tone_corpus

    root, labels = make_tone_corpus(tmp_path, num_units=6, utterances=(12, 12))
    valid = read_manifest(root / "valid.tsv")
    alignments = {valid.utterance_id(i): [f"p{c}" for c in np.repeat(row, 2)]  # 100 Hz phones
                  for i, row in enumerate(read_labels(labels / "valid.km"))}
    rng = np.random.default_rng(0)

    def stand_in(wav, layers):
        frames = num_model_frames(len(wav))
        peaks = np.abs(np.fft.rfft(wav[:frames * CONV_STRIDE].reshape(frames, CONV_STRIDE), axis=1)).argmax(1)
        return {1: np.eye(CONV_STRIDE // 2 + 1, dtype=np.float32)[peaks],
                2: rng.standard_normal((frames, 8)).astype(np.float32)}

    halves = {"first": valid.subset(np.arange(0, 12, 2)), "second": valid.subset(np.arange(1, 12, 2))}
    data = quality_data(read_manifest(root / "train.tsv"), halves, alignments, None, QualityBudget(num_units=12))
    rows = layer_rows("stand-in", stand_in, [1, 2], 50, data.fit, data.report_manifests())
    scores = {layer: measure_row(row, data, full=False) for layer, row in rows.items()}
    for name in halves:  # one k-means per layer, scored on each held-out set
        assert scores[1].splits[name].pnmi > 0.9 and scores[2].splits[name].pnmi < 0.1
    assert scores[1].kmeans["seconds"] == scores[2].kmeans["seconds"] == round(data.fit_seconds, 2)


def test_hubert_quality_on_features_names_what_is_missing(tiny_manifest, tmp_path, capsys):
    from test_bad_input import cli_error

    manifest = str(tmp_path / "train.tsv")
    base = ["quality", "--manifest", manifest, "--out", str(tmp_path / "q")]
    assert cli_error(base + ["--features", "mfcc", "--alignments", manifest], capsys).startswith(
        "--fit-manifest is needed with --features or --model")
    assert cli_error(base + ["--model", "m.pt", "--fit-manifest", manifest, "--alignments", manifest],
                     capsys) == "--model needs --layer N (1-based), e.g. --layer 6"


def test_speakers_come_from_a_file_or_a_folder_level(tmp_path):
    from clustering.speakers import find_speakers

    (tmp_path / "spk.tsv").write_text("uid\tspeaker\n84/121/84-121-0000\tanna\n")
    assert find_speakers(["84/121/84-121-0000"], tmp_path / "spk.tsv") == {"84/121/84-121-0000": "anna"}
    assert find_speakers(["84/121/84-121-0000"], folder_level=1) == {"84/121/84-121-0000": "84"}
    assert find_speakers(["84/121/84-121-0000"]) is None
    with pytest.raises(ValueError, match="utterance x: no folder at level 1"):
        find_speakers(["x"], folder_level=1)

"""Layer features in padded batches: each utterance gets the features it gets alone, batches are
planned once per split so any number of workers labels the same bytes, and the CLI runs it."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from clustering.assign import label_audio, merge_label_shards, shard_label_path
from clustering.audio import AudioError, load_audio
from clustering.features import FeatureError
from clustering.kmeans import KMeansInfo, KMeansTeacher
from clustering.labels import LabelInfo, read_labels, write_labels
from clustering.manifest import read_manifest, write_manifest
from clustering.feature_shards import FeatureShards
from conftest import speechlike
from pipelines.cli import main
from pretrain.presets import model_preset
from pretrain.layer_features import LayerFeatures, batches_for, plan_feature_batches, recorded_event
from pretrain.model import HubertEncoder, HubertPretrain, normalize_waveform
from pretrain.model_io import model_state


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for every computation of a test, so results compare bit for bit, and fast on
    a busy 2-core machine (where OpenMP's second thread waits for a free core at every op)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_encoder(large_like: bool = False, seed: int = 0) -> HubertEncoder:
    """Random-init tiny encoder in eval mode: BASE's shape, or LARGE's (layer-norm CNN, pre-LN,
    normalised waveform)."""
    torch.manual_seed(seed)
    config = model_preset("tiny")
    if large_like:
        config = dataclasses.replace(config, feat_extract_norm="layer", do_stable_layer_norm=True, normalize=True)
    return HubertEncoder(config).eval()


def alone(encoder: HubertEncoder, wav: np.ndarray, layer: int, max_chunk: int) -> np.ndarray:
    """The utterance run by itself, chunk by chunk, no padding anywhere: (frames, dim). A tail
    chunk shorter than one frame's 400 samples gives no frame."""
    x = torch.from_numpy(wav)[None]
    if encoder.config.normalize:
        x = normalize_waveform(x, torch.tensor([x.shape[1]]))
    with torch.no_grad():
        return torch.cat([encoder(chunk, normalize=False).layers[layer - 1][0]
                          for chunk in x.split(max_chunk, dim=1) if chunk.shape[1] >= 400]).numpy()


@pytest.fixture
def corpus(tmp_path):
    """24 utterances of 0.3 to 1.7 s in manifest order of no particular length: train.tsv."""
    rng = np.random.default_rng(1)
    (tmp_path / "audio").mkdir()
    entries = []
    for i, seconds in enumerate(rng.uniform(0.3, 1.7, 24)):
        wav = speechlike(seconds, rng)
        sf.write(tmp_path / "audio" / f"u{i:02d}.wav", wav, 16000, subtype="FLOAT")
        entries.append((f"u{i:02d}.wav", len(wav)))
    write_manifest(tmp_path / "train.tsv", tmp_path / "audio", entries)
    return read_manifest(tmp_path / "train.tsv")


@pytest.mark.parametrize("large_like", [False, True], ids=["base-like", "large-like"])
def test_a_padded_batch_gives_each_utterance_its_features_alone(corpus, large_like):
    encoder = tiny_encoder(large_like)
    features = LayerFeatures(encoder, 2, device="cpu", max_chunk=12000, batch_seconds=2.5,
                             loader_workers=0)
    plan = features.plan(corpus)
    assert max(len(batch.rows) for batch in plan) > 2  # padding really happens
    assert any(r.start > 0 for batch in plan for r in batch.rows)  # and long files are cut
    streamed = list(features.stream(corpus))
    assert len(streamed) == len(corpus)
    for i, feats in enumerate(streamed):
        wav = load_audio(corpus.audio_path(i))
        expected = alone(encoder, wav, 2, 12000)
        assert feats.dtype == np.float32 and feats.shape == expected.shape
        np.testing.assert_allclose(feats, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(features(wav), expected, atol=1e-4, rtol=0)  # one utterance: same path


def test_batches_are_planned_once_from_lengths_and_dealt_to_any_number_of_workers():
    sizes = np.random.default_rng(0).integers(8_000, 300_000, 500).tolist() + [5_000_000]
    budget = 480_000
    plan = plan_feature_batches(sizes, budget, max_chunk=1_600_000)
    chunks = sorted((r.utterance, r.start) for batch in plan for r in batch.rows)
    assert chunks == sorted((i, s) for i, n in enumerate(sizes) for s in range(0, n, 1_600_000))
    for batch in plan:
        assert [r.samples for r in batch.rows] == sorted((r.samples for r in batch.rows), reverse=True)
        assert batch.padded_samples <= budget or len(batch.rows) == 1  # a 100 s chunk is a batch alone
    padding = 1 - sum(sizes) / sum(batch.padded_samples for batch in plan)
    assert padding < 0.06, padding  # sorted within windows: little padding
    for nshard in (1, 2, 3, 7):  # every worker computes whole batches of the one plan
        dealt = [batches_for(plan, range(*shard)) for shard in
                 [(round(len(sizes) / nshard * r), round(len(sizes) / nshard * (r + 1))) for r in range(nshard)]]
        assert all(batch in plan for batches in dealt for batch in batches)
        assert sum(map(len, dealt)) <= len(plan) + 2 * 8 * (nshard - 1)  # at most 2 windows shared per cut


def save_checkpoint(encoder: HubertEncoder, path):
    model = HubertPretrain(encoder.config, [8])
    model.encoder = encoder
    torch.save(model_state(model), path)
    return path


def teacher_for(features: LayerFeatures, manifest, path, units: int = 16):
    """Centroids drawn from real layer frames (so assignments are not degenerate), saved at `path`."""
    frames = np.concatenate(list(features.stream(manifest, range(4))))
    rng = np.random.default_rng(0)
    centroids = frames[rng.choice(len(frames), units, replace=False)]
    teacher = KMeansTeacher(centroids, KMeansInfo(units, frames.shape[1], "test"))
    teacher.save(path)
    return teacher


def test_labels_from_two_workers_equal_one_workers_byte_for_byte(corpus, tmp_path):
    encoder = tiny_encoder()
    checkpoint = save_checkpoint(encoder, tmp_path / "it1.pt")
    teacher_for(LayerFeatures(encoder, 2, device="cpu"), corpus, tmp_path / "km.npy")
    plan = LayerFeatures(encoder, 2, device="cpu", batch_seconds=3).plan(corpus)
    halves = [corpus.shard(rank, 2) for rank in range(2)]
    assert any(all(any(r.utterance in half for r in batch.rows) for half in halves) for batch in plan)  # shared
    common = [str(tmp_path), str(tmp_path / "km.npy"), "--splits", "train", "--model", str(checkpoint),
              "--layer", "2", "--batch-seconds", "3", "--jobs", "1"]
    assert main(["labels", *common[:2], str(tmp_path / "one"), *common[2:]]) == 0
    two = [*common[:2], str(tmp_path / "two"), *common[2:], "--nshard", "2"]
    for rank in (1, 0):  # in any order, one after the other: two workers
        assert main(["labels", *two, "--rank", str(rank)]) == 0
    assert main(["labels", *two, "--merge"]) == 0
    one, two = (tmp_path / "one" / "train.km").read_bytes(), (tmp_path / "two" / "train.km").read_bytes()
    assert one == two
    info = LabelInfo.load(tmp_path / "two")
    assert info.label_rate == 50 and info.num_units == 16 and info.features == f"layer2 of {checkpoint}"
    assert len(set(np.concatenate(read_labels(tmp_path / "one" / "train.km")).tolist())) > 4


def test_two_worker_shards_merge_to_one_worker_with_the_library_calls(corpus, tmp_path):
    features = LayerFeatures(tiny_encoder(), 2, device="cpu", batch_seconds=1.5)
    teacher = teacher_for(features, corpus, tmp_path / "km.npy")
    for rank in range(2):
        write_labels(shard_label_path(tmp_path, "train", rank, 2), label_audio(corpus, features, teacher, rank, 2))
    merged = read_labels(merge_label_shards(tmp_path, "train", 2, corpus))
    single = label_audio(corpus, features, teacher)
    assert all(np.array_equal(a, b) for a, b in zip(merged, single, strict=True))
    assert all(np.array_equal(a, teacher.assign(f)) for a, f in zip(single, features.stream(corpus)))


def test_features_command_dumps_layer_shards_from_a_checkpoint_or_a_hugging_face_folder(corpus, tmp_path, capsys):
    from pretrain.hf import export_hf

    encoder = tiny_encoder()
    checkpoint = save_checkpoint(encoder, tmp_path / "it1.pt")
    export_hf(encoder, tmp_path / "hf")
    manifest = str(tmp_path / "train.tsv")
    for rank in range(3):
        assert main(["features", manifest, str(tmp_path / "ckpt"), "--layer", "1", "--model", str(checkpoint),
                     "--rank", str(rank), "--nshard", "3", "--device", "cpu"]) == 0
    hf_dump = ["features", manifest, str(tmp_path / "hf_feats"), "--layer", "1", "--model", str(tmp_path / "hf")]
    assert main(hf_dump) == 0
    dumped, from_hf = FeatureShards(tmp_path / "ckpt", "train", 3), FeatureShards(tmp_path / "hf_feats", "train")
    expected = list(LayerFeatures(encoder, 1, device="cpu").stream(corpus))
    assert len(dumped) == len(from_hf) == len(corpus)
    for i, feats in enumerate(expected):
        np.testing.assert_array_equal(dumped[i], feats)
        np.testing.assert_array_equal(from_hf[i], feats)
    assert main(["features", manifest, str(tmp_path / "x"), "--layer", "1"]) != 0
    assert "--layer and --model go together" in capsys.readouterr().err


def test_bf16_autocast_gives_float32_features_close_to_float32(corpus):
    encoder = tiny_encoder()
    exact, bf16 = (list(LayerFeatures(encoder, 2, device="cpu", precision=precision,
                                      batch_seconds=3).stream(corpus, range(6))) for precision in ("fp32", "bf16"))
    for a, b in zip(exact, bf16):
        assert b.dtype == np.float32 and b.shape == a.shape
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.99


def test_loader_processes_decode_ahead_and_errors_name_the_file(corpus, tmp_path):
    encoder = tiny_encoder()
    in_process, ahead = (list(LayerFeatures(encoder, 2, device="cpu", batch_seconds=2,
                                            loader_workers=workers).stream(corpus)) for workers in (0, 2))
    assert all(np.array_equal(a, b) for a, b in zip(in_process, ahead, strict=True))
    sf.write(tmp_path / "audio" / "short.wav", np.zeros(100, np.float32), 16000)
    features = LayerFeatures(encoder, 2, device="cpu", loader_workers=1)
    good = (corpus.paths[0], corpus.sizes[0])
    write_manifest(tmp_path / "short.tsv", tmp_path / "audio", [good, ("short.wav", 100)])
    with pytest.raises(FeatureError, match=r"short.wav \(manifest line 3\): 100 samples, shorter than one 25 ms "
                                           r"frame \(400 samples\): remove the line"):
        list(features.stream(read_manifest(tmp_path / "short.tsv")))
    write_manifest(tmp_path / "missing.tsv", tmp_path / "audio", [good, ("missing.wav", 16000)])
    with pytest.raises(AudioError, match=r"missing.wav \(manifest line 3\): audio file not found; it was moved"):
        list(features.stream(read_manifest(tmp_path / "missing.tsv")))


def test_auto_device_is_the_gpu_when_one_is_present():
    features = LayerFeatures(tiny_encoder(), 1)
    assert features.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert features.bf16 == torch.cuda.is_available()


def test_every_copy_to_the_model_device_is_non_blocking(corpus, monkeypatch):
    """Audio, lengths and the valid-frame index go to the device without the host waiting for the
    batch before (on CUDA from pinned memory)."""
    copies = []
    real_to = torch.Tensor.to

    def spy(tensor, *args, **kwargs):
        if args and isinstance(args[0], torch.device):
            copies.append(kwargs.get("non_blocking", False))
        return real_to(tensor, *args, **kwargs)

    features = LayerFeatures(tiny_encoder(), 1, device="cpu", loader_workers=0)
    monkeypatch.setattr(torch.Tensor, "to", spy)
    list(features.stream(corpus))
    assert len(copies) == 3 * len(features.plan(corpus)) and all(copies)


def test_results_are_awaited_on_the_stream_of_the_models_device(monkeypatch):
    """The read-back event is recorded on the model's device (cuda:3 here), not on the current
    device a torchrun worker that never called set_device would have (cuda:0)."""
    recorded = []

    class Event:
        def record(self, stream=None):
            recorded.append(stream)

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"current stream of {device}")
    recorded_event(torch.device("cuda", 3))
    assert recorded == ["current stream of cuda:3"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_bf16_labels_agree_with_cpu_float32(corpus, tmp_path):
    cpu = LayerFeatures(tiny_encoder(), 2, device="cpu")
    gpu = LayerFeatures(tiny_encoder(), 2, device="cuda")  # bf16
    teacher = teacher_for(cpu, corpus, tmp_path / "km.npy")
    a, b = np.concatenate(label_audio(corpus, cpu, teacher)), np.concatenate(label_audio(corpus, gpu, teacher))
    assert a.shape == b.shape and (a == b).mean() > 0.95


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_padded_batch_on_the_gpu_gives_each_utterance_its_features_alone(corpus):
    features = LayerFeatures(tiny_encoder(), 2, device="cuda", precision="fp32", max_chunk=12000, batch_seconds=2.5)
    for i, feats in enumerate(features.stream(corpus)):
        np.testing.assert_allclose(feats, features(load_audio(corpus.audio_path(i))), atol=1e-3, rtol=0)

"""MFCC features equal the reference recipe; dumps are sharded like fairseq and crash-safe."""
import numpy as np
import pytest
import torch
import soundfile as sf
import torchaudio

from clustering.audio import load_audio
from clustering.assign import label_audio
from clustering.features import FeatureError, dump_features, mfcc_features, shard_paths
from clustering.kmeans import KMeansInfo, KMeansTeacher
from clustering.manifest import read_manifest, write_manifest
from clustering.feature_shards import FeatureShards


def reference_mfcc(wav):
    """fairseq examples/hubert/simple_kmeans/dump_mfcc_feature.py, step by step."""
    x = torch.from_numpy(wav).float().view(1, -1)
    mfccs = torchaudio.compliance.kaldi.mfcc(waveform=x, sample_frequency=16000, use_energy=False)
    mfccs = mfccs.transpose(0, 1)
    deltas = torchaudio.functional.compute_deltas(mfccs)
    ddeltas = torchaudio.functional.compute_deltas(deltas)
    return torch.cat([mfccs, deltas, ddeltas], dim=0).transpose(0, 1).contiguous().numpy()


def test_mfcc_equals_the_reference_bit_for_bit(tiny_manifest):
    rng = np.random.default_rng(0)
    wavs = [load_audio(tiny_manifest.audio_path(i)) for i in range(len(tiny_manifest))]
    wavs += [rng.standard_normal(400).astype(np.float32), np.zeros(1234, np.float32),  # one frame; log floor
             (1e-4 * rng.standard_normal(16000 * 20)).astype(np.float32)]  # quiet and long
    for wav in wavs:
        ours, ref = mfcc_features(wav), reference_mfcc(wav)
        assert ours.shape == ref.shape == (1 + (len(wav) - 400) // 160, 39)
        np.testing.assert_array_equal(ours, ref)
    assert mfcc_features(np.zeros(399, np.float32)).shape == (0, 39)  # shorter than one window


def test_shards_cover_the_manifest_in_order(tiny_manifest, tmp_path):
    for rank in range(3):
        dump_features(tiny_manifest, mfcc_features, tmp_path / "f", "train", rank, 3, jobs=2 if rank else 1)
    shards = FeatureShards(tmp_path / "f", "train", 3)
    assert len(shards) == len(tiny_manifest)
    for i in range(len(tiny_manifest)):
        np.testing.assert_array_equal(shards[i], mfcc_features(load_audio(tiny_manifest.audio_path(i))))
    sample = shards.sample(0.5, seed=1)
    assert sample.shape[1] == 39 and 0 < len(sample) < shards.num_frames


def threads_as_features(wav: np.ndarray) -> np.ndarray:
    """A feature function that reports the torch threads of the process it runs in."""
    return np.full((1, 1), torch.get_num_threads(), np.float32)


def test_feature_processes_get_one_thread_and_the_callers_process_keeps_its_own(tiny_manifest, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        mfcc_features(load_audio(tiny_manifest.audio_path(0)))
        assert torch.get_num_threads() == 3  # an in-process call leaves the setting alone
        for jobs, threads in ((2, 1), (1, 3)):  # worker processes: one thread each
            npy, _ = dump_features(tiny_manifest, threads_as_features, tmp_path / f"jobs{jobs}", "train", jobs=jobs)
            assert set(np.load(npy).ravel()) == {threads}
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_killed_dump_reruns_to_identical_bytes(tiny_manifest, tmp_path):
    calls = []

    def crashing(wav):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("killed")
        return mfcc_features(wav)

    with pytest.raises(FeatureError, match=r"u3.wav \(manifest line 5\): feature extraction failed \(killed\)"):
        dump_features(tiny_manifest, crashing, tmp_path / "a", "train")
    npy, lens = shard_paths(tmp_path / "a", "train", 0, 1)
    assert not npy.exists() and not lens.exists()  # no partial shard is visible
    dump_features(tiny_manifest, mfcc_features, tmp_path / "a", "train")
    dump_features(tiny_manifest, mfcc_features, tmp_path / "b", "train")
    for a, b in zip(shard_paths(tmp_path / "a", "train", 0, 1), shard_paths(tmp_path / "b", "train", 0, 1)):
        assert a.read_bytes() == b.read_bytes()
    assert np.load(npy).shape[0] == sum(map(int, lens.read_text().split()))


def test_missing_shard_names_the_file_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train_0_2.npy.*--rank 0 --nshard 2"):
        FeatureShards(tmp_path, "train", 2)


def cnn_features(wav):
    """Stand-in for a model's CNN: one 400-sample kernel, stride 320, (frames, 1)."""
    x = torch.from_numpy(wav)[None, None]
    return torch.nn.functional.conv1d(x, torch.ones(1, 1, 400), stride=320)[0].T.numpy()


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_utterance_is_named_with_its_manifest_line(tmp_path, jobs):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "long.wav", np.zeros(16000, np.float32), 16000)
    sf.write(tmp_path / "audio" / "short.wav", np.zeros(100, np.float32), 16000)
    write_manifest(tmp_path / "train.tsv", tmp_path / "audio", [("long.wav", 16000), ("short.wav", 100)])
    manifest = read_manifest(tmp_path / "train.tsv")
    expected = (r"short.wav \(manifest line 3\): feature extraction failed \(Calculated padded input size.*\); "
                r"100 samples, shorter than one 25 ms frame \(400 samples\): remove the line")
    with pytest.raises(FeatureError, match=expected):
        dump_features(manifest, cnn_features, tmp_path / "f", "train", jobs=jobs)
    teacher = KMeansTeacher(np.zeros((2, 1), np.float32), KMeansInfo(2, 1, "test"))
    with pytest.raises(FeatureError, match=expected):
        label_audio(manifest, cnn_features, teacher)


def test_a_kmeans_sample_stays_within_its_memory_budget(tiny_manifest, tmp_path):
    dump_features(tiny_manifest, mfcc_features, tmp_path / "f", "train")
    shards = FeatureShards(tmp_path / "f", "train")
    whole = shards.sample(1.0)
    assert np.array_equal(whole, np.concatenate(list(shards)))  # no budget: every frame, in order
    budget = 200 * 39 * 2  # bytes of 200 float16 frames
    small = shards.sample(1.0, seed=3, max_bytes=budget, dtype=np.float16)
    assert small.dtype == np.float16 and small.nbytes <= budget and len(small) == 200
    rows = {row.tobytes() for row in whole.astype(np.float16)}
    assert all(row.tobytes() in rows for row in small)  # frames of the sample, subsampled
    assert np.array_equal(small, shards.sample(1.0, seed=3, max_bytes=budget, dtype=np.float16))
    assert len(shards.sample(1.0, max_bytes=10 ** 9)) == len(whole)  # a budget that fits takes all

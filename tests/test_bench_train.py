"""The training benchmark: profiled after its timed window, a corpus made without soundfile, and
on a GPU machine (no git) the old tree read from the carried kit or a message saying how to make it."""
import sys

import numpy as np
import pytest

from benchmarks import bench_train
from clustering.audio import load_audio
from clustering.manifest import read_manifest


@pytest.fixture(scope="module")
def bench_corpus(tmp_path_factory):
    """The benchmark's corpus (random 100 Hz labels), written while soundfile cannot be imported."""
    blocked = pytest.MonkeyPatch()
    blocked.setitem(sys.modules, "soundfile", None)  # `import soundfile` raises ImportError
    try:
        return bench_train.make_corpus(tmp_path_factory.mktemp("bench") / "corpus", hours=0.01)
    finally:
        blocked.undo()


def test_the_corpus_is_written_without_soundfile_and_reads_back(bench_corpus):
    data, labels = bench_corpus
    manifest = read_manifest(data / "train.tsv")
    assert len(manifest) == 3 and (labels / "train.km").exists()
    for i in range(len(manifest)):
        wav = load_audio(manifest.audio_path(i))
        assert len(wav) == manifest.sizes[i] and 0.005 < np.abs(wav).mean() < 0.5


def test_the_device_is_profiled_after_the_timed_window(bench_corpus, tmp_path):
    """Updates 5-8 are timed; the profiler runs over updates 10-11 only, and its trace is parsed
    after training (on this CPU-only machine it profiles the CPU's operators)."""
    data, labels = bench_corpus
    result = bench_train.run_variant(bench_train.ROOT, "tiny", 4, {"max_tokens": 64000, "num_workers": 0},
                                     data, labels, True, 300, work=tmp_path)
    assert "error" not in result, result
    assert result["measured_updates"] == [4, 8] and result["profiled_updates"] == [9, 11]
    assert result["audio_s_per_s"] > 0 and 0 < result["gpu_busy"] <= 1
    assert not (tmp_path / "bench-train-tiny").exists()


def test_busy_share_is_the_union_of_intervals_over_their_span():
    assert bench_train.busy_share([(5, 6), (0, 2), (1, 3)]) == pytest.approx(4 / 6)
    assert bench_train.busy_share([]) is None


def test_without_the_old_tree_the_gpu_mode_says_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match=r"no old tree at .*missing.*prepare_gpu_kit.sh.*carry benchmarks/out/gpu-kit"):
        bench_train.find_old_tree(tmp_path / "missing", "da37152", "gpu")
    (tmp_path / "old" / "pretrain").mkdir(parents=True)
    (tmp_path / "old" / "pretrain" / "trainer.py").write_text("")
    assert bench_train.find_old_tree(tmp_path / "old", "da37152", "gpu") == tmp_path / "old"

"""The trainer's dataset at scale: a loader worker's memory does not grow with the number of labels,
and batches are planned in numpy exactly as the greedy reference plans them."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench_scale  # noqa: E402
from pretrain.batch_plan import plan_batches  # noqa: E402
from pretrain.layer_features import FeatureBatch, Row, batches_for, plan_feature_batches  # noqa: E402


def test_a_loader_workers_memory_does_not_grow_with_ten_times_the_labels(tmp_path):
    """RssAnon of the largest DataLoader worker of a fresh trainer process (pretrain.trainer.MicroBatches
    over LabelledAudio), after drawing batches: 2,000 vs 20,000 utterances of 50 Hz labels (1.2M vs 12M)."""
    found = {}
    for utterances in (2_000, 20_000):
        folder = tmp_path / str(utterances)
        folder.mkdir()
        label_bytes = bench_scale.write_split(folder, utterances, label_rate=50)
        bench_scale.build_arrays(folder)
        found[utterances] = bench_scale.measure(folder, workers=1, batches=3)
        found[utterances]["label_bytes"] = label_bytes
    small, large = found[2_000], found[20_000]
    assert large["label_bytes"] > 9 * small["label_bytes"] and small["loaders"] == large["loaders"] == 1
    assert large["rss_worker_mib"] - small["rss_worker_mib"] < 20, found
    assert large["rss_main_mib"] - small["rss_main_mib"] < 20, found


def test_a_dataset_pickled_for_a_spawned_worker_is_small_and_loads_the_same(tmp_path):
    """A loader worker started by spawn or forkserver (not fork) gets the dataset pickled: paths,
    not arrays, whatever the number of utterances; it maps the arrays itself."""
    import pickle

    from pretrain.labelled_audio import BatchLoader, LabelledAudio, PlannedBatches

    bench_scale.write_split(tmp_path, 5_000, label_rate=50)
    data = LabelledAudio(tmp_path / "train.tsv", [tmp_path], 40_000)  # some utterances dropped
    planned = PlannedBatches(BatchLoader(data, [], 0, True, 250_000, 0), 1_400_000, 0, 1)
    planned.epoch(0)
    copy = pickle.loads(pickle.dumps(planned))
    assert len(pickle.dumps(planned)) < 10_000 and data.dropped > 0 and len(copy.loader.data) == len(data)
    key = planned.key(0, 3)
    a, b = planned[key], copy[key]
    assert a.wav.equal(b.wav) and all(x.equal(y) for x, y in zip(a.targets, b.targets))


def greedy_reference(sizes, max_tokens, max_sample_size, seed, epoch):
    """The planner as it was written first: a Python loop over length-sorted items."""
    rng = np.random.default_rng([seed, epoch])
    capped = np.minimum(np.asarray(sizes), max_sample_size)
    order = np.lexsort((rng.permutation(len(capped)), capped))
    batches, current, longest = [], [], 0
    for item in order.tolist():
        size = int(capped[item])
        if current and max(longest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(item)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


@pytest.mark.parametrize("seed", range(40))
def test_batch_plans_are_the_greedy_references(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 3000))
    sizes = rng.integers(1, int(rng.choice([100, 40_000, 600_000])), count)
    if seed % 3 == 0:  # many equal lengths, as when most utterances are cropped to max_sample_size
        sizes = rng.choice([8_000, 16_000, 250_000], count)
    max_tokens, max_sample_size = int(rng.integers(1, 2_000_000)), int(rng.integers(1, 400_000))
    planned = plan_batches(sizes, max_tokens, max_sample_size, seed, seed % 5)
    assert [p.tolist() for p in planned] == greedy_reference(sizes, max_tokens, max_sample_size, seed, seed % 5)


def feature_reference(sizes, batch_samples, max_chunk, window_batches):
    """The layer-feature planner as it was written first: Row objects, windows and packing in Python."""
    batches, start, total = [], 0, 0
    windows = []
    for i, samples in enumerate(sizes):
        total += samples
        if total >= window_batches * batch_samples:
            windows.append(range(start, i + 1))
            start, total = i + 1, 0
    if start < len(sizes):
        windows.append(range(start, len(sizes)))
    for window in windows:
        rows = sorted((Row(i, s, min(max_chunk, sizes[i] - s)) for i in window for s in range(0, sizes[i], max_chunk)),
                      key=lambda row: (-row.samples, row.utterance, row.start))
        current = []
        for row in rows:
            if current and (len(current) + 1) * current[0].samples > batch_samples:
                batches.append(FeatureBatch(tuple(current)))
                current = []
            current.append(row)
        if current:
            batches.append(FeatureBatch(tuple(current)))
    return batches


@pytest.mark.parametrize("seed", range(20))
def test_layer_feature_plans_are_the_references(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(0, 400))
    sizes = rng.integers(1, int(rng.choice([1_000, 300_000, 5_000_000])), count).tolist()
    batch_samples, max_chunk = int(rng.integers(1_000, 2_000_000)), int(rng.integers(1_000, 2_000_000))
    window_batches = int(rng.integers(1, 10))
    plan = plan_feature_batches(np.array(sizes, np.int64), batch_samples, max_chunk, window_batches)
    reference = feature_reference(sizes, batch_samples, max_chunk, window_batches)
    assert list(plan) == reference
    for nshard in (1, 3):
        for rank in range(nshard):
            lines = range(round(count / nshard * rank), round(count / nshard * (rank + 1)))
            mine = [b for b in reference if any(row.utterance in lines for row in b.rows)]
            assert list(batches_for(plan, lines)) == mine

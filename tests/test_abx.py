"""Triphone ABX: equal to a slow reference on the same triplets, 0% on one-hot phones, chance on
random features of equal length, and blind to the order or padding of the utterance set."""
import math
from pathlib import Path

import numpy as np
import pytest

from clustering import dtw
from clustering.abx import abx_score, across_cells, item_features, within_cells
from clustering.abx_items import ITEM_HEADER, Item, frame_span, subsample, triphone_items, write_item_file
from clustering.manifest import Manifest

PHONES = ["a", "e", "i", "o", "u", "k"]


def corpus(rng, utterances: int, speakers: int, duration=(2, 6), phones=PHONES, length: int = 40):
    """(manifest, {uid: 100 Hz phones}, {uid: speaker}): random phone strings, silence at both ends."""
    uids, aligned = [], {}
    for u in range(utterances):
        uid = f"s{u % speakers}/u{u:03d}"
        sequence = [phones[rng.integers(len(phones))]]
        while len(sequence) < length:
            nxt = phones[rng.integers(len(phones))]
            if nxt != sequence[-1]:
                sequence.append(nxt)
        frames = ["sil"] * 5
        for phone in sequence:
            frames += [phone] * (duration if isinstance(duration, int) else int(rng.integers(*duration)))
        aligned[uid] = frames + ["sil"] * 5
        uids.append(uid)
    sizes = tuple(len(aligned[uid]) * 160 + 400 for uid in uids)
    return Manifest(Path("/nowhere"), tuple(f"{uid}.wav" for uid in uids), sizes), aligned, \
        {uid: uid.split("/")[0] for uid in uids}


def abx(manifest, aligned, speakers, features, across=False, max_items=10):
    """ABX error of per-utterance `features` (100 Hz) through items, subsampling and cells."""
    items = subsample(triphone_items(manifest, aligned, speakers), max_items, seed=0)
    cells = across_cells(items, max_items, 5, 0) if across else within_cells(items, max_items)
    owners = np.array([it.utterance for it in items])
    return abx_score(cells, item_features(features, items, 100), owners), items


def reference_dtw(a: np.ndarray, b: np.ndarray) -> float:
    """Angular frame distances summed along the cheapest path, over the backtracked path's length."""
    d = np.arccos(np.clip(a.astype(np.float64) @ b.astype(np.float64).T, -1, 1)) / math.pi
    n, m = d.shape
    c = np.full((n + 1, m + 1), np.inf)
    c[0, 0] = 0
    for i in range(n):
        for j in range(m):
            c[i + 1, j + 1] = d[i, j] + min(c[i, j + 1], c[i, j], c[i + 1, j])
    i, j, steps = n - 1, m - 1, 1
    while i > 0 and j > 0:
        up, left, diag = c[i, j + 1], c[i + 1, j], c[i, j]
        i, j = (i - 1, j - 1) if diag <= min(left, up) else (i, j - 1) if left <= up else (i - 1, j)
        steps += 1
    return c[n, m] / (steps + i + j)


def reference_abx(items: list[Item], feats: list[np.ndarray], across: bool, max_x_speakers: int = 100) -> float:
    """Every triplet of every cell by hand; mean per cell, then over contexts (and X speakers), then
    speakers, then phone pairs."""
    groups = {}
    for k, it in enumerate(items):
        groups.setdefault((it.prev, it.next, it.speaker, it.phone), []).append(k)
    by_speaker = {}
    for (prev, nxt, speaker, phone_a), a_set in groups.items():
        for (prev_b, nxt_b, speaker_b, phone_b), b_set in groups.items():
            if (prev_b, nxt_b, speaker_b) != (prev, nxt, speaker) or phone_b == phone_a:
                continue
            x_sets = [a_set] if not across else [x for (p, n, s, ph), x in groups.items()
                                                 if (p, n, ph) == (prev, nxt, phone_a) and s != speaker]
            for x_set in x_sets:
                errors = [1.0 if reference_dtw(feats[x], feats[a]) > reference_dtw(feats[x], feats[b]) else
                          0.5 if reference_dtw(feats[x], feats[a]) == reference_dtw(feats[x], feats[b]) else 0.0
                          for x in x_set for a in a_set if a != x for b in b_set]
                if errors:
                    by_speaker.setdefault((phone_a, phone_b, speaker), []).append(np.mean(errors))
    by_pair = {}
    for (phone_a, phone_b, _), cells in by_speaker.items():
        by_pair.setdefault((phone_a, phone_b), []).append(np.mean(cells))
    return float(np.mean([np.mean(v) for v in by_pair.values()]))


@pytest.mark.parametrize("across", [False, True])
def test_abx_equals_a_brute_force_reference_on_the_same_triplets(across):
    rng = np.random.default_rng(1)
    manifest, aligned, speakers = corpus(rng, 12, 3, duration=(2, 6), phones=PHONES[:3], length=25)
    features = [rng.standard_normal((len(aligned[manifest.utterance_id(i)]), 5)).astype(np.float32)
                for i in range(len(manifest))]
    score, items = abx(manifest, aligned, speakers, features, across, max_items=4)
    assert len(score.cells) > 5
    assert score.error == pytest.approx(reference_abx(items, item_features(features, items, 100), across), abs=1e-12)


def one_hot(aligned: list[str]) -> np.ndarray:
    names = PHONES + ["sil"]
    return np.eye(len(names), dtype=np.float32)[[names.index(p) for p in aligned]]


def test_one_hot_phone_features_give_zero_error_within_and_across_speakers():
    rng = np.random.default_rng(2)
    manifest, aligned, speakers = corpus(rng, 30, 3)
    features = [one_hot(aligned[manifest.utterance_id(i)]) for i in range(len(manifest))]
    for across in (False, True):
        score, _ = abx(manifest, aligned, speakers, features, across)
        assert len(score.cells) > 50 and score.error == 0.0


def test_random_features_on_items_of_equal_length_are_at_chance():
    rng = np.random.default_rng(3)
    manifest, aligned, speakers = corpus(rng, 60, 3, duration=4)
    features = [rng.standard_normal((len(aligned[manifest.utterance_id(i)]), 16)).astype(np.float32)
                for i in range(len(manifest))]
    score, items = abx(manifest, aligned, speakers, features)
    assert len({it.end - it.start for it in items}) == 1 and len(score.cells) > 200
    assert score.error == pytest.approx(0.5, abs=0.03)


def test_reordered_or_padded_utterances_give_the_same_figure(monkeypatch):
    rng = np.random.default_rng(4)
    manifest, aligned, speakers = corpus(rng, 24, 3)
    features = [rng.standard_normal((len(aligned[manifest.utterance_id(i)]), 8)).astype(np.float32)
                for i in range(len(manifest))]
    base, _ = abx(manifest, aligned, speakers, features, across=True, max_items=3)
    order = rng.permutation(len(manifest))
    shuffled = manifest.subset(order)
    assert abx(shuffled, aligned, speakers, [features[k] for k in order], True, 3)[0].error == base.error
    silent = {f"s0/pad{k}": ["sil"] * 50 for k in range(3)}  # utterances with no item
    padded = Manifest(manifest.root, manifest.paths + tuple(f"{uid}.wav" for uid in silent),
                      manifest.sizes + (50 * 160 + 400,) * 3)
    noise = [rng.standard_normal((50, 8)).astype(np.float32) for _ in silent]
    assert abx(padded, {**aligned, **silent}, {**speakers, **{u: "s0" for u in silent}}, features + noise,
               True, 3)[0].error == base.error
    monkeypatch.setattr(dtw, "BATCH_ELEMENTS", 100_000)  # many small padded batches instead of one
    assert abx(manifest, aligned, speakers, features, True, 3)[0].error == base.error


def test_batched_dtw_equals_one_pair_at_a_time():
    rng = np.random.default_rng(5)
    items = [dtw.unit_rows(rng.standard_normal((int(rng.integers(1, 9)), 4)).astype(np.float32)) for _ in range(12)]
    first, second = np.triu_indices(12, 1)
    batched = dtw.pair_distances(items, first, second)
    alone = [reference_dtw(items[i], items[j]) for i, j in zip(first, second)]
    assert batched == pytest.approx(alone, abs=1e-6)


def test_item_file_is_what_fastabx_reads(tmp_path):
    item = Item(0, "spk/u1", 29, 47, "e", "l", "k", "spk")
    path = write_item_file(tmp_path / "dev.item", [item])
    assert path.read_text().splitlines() == [ITEM_HEADER, "spk/u1 0.29 0.47 e l k spk"]
    # fastabx keeps the frames whose centre (k + 0.5) / rate lies within [onset, offset]
    assert frame_span(item, 100) == (29, 47)
    assert frame_span(item, 50) == (14, 24)  # centres 0.29 .. 0.47 s, both ends included

"""Manifests and labels as memory-mapped arrays: the same sizes, paths and labels as the text files,
and arrays that are stale, truncated or do not add up are rebuilt from the text, never trusted."""
import multiprocessing
import os

import numpy as np
import pytest

from clustering import manifest_arrays
from clustering.flat_arrays import ArrayWriter, arrays_path, text_stamp
from clustering.label_arrays import open_label_arrays, write_label_arrays
from clustering.labels import LabelError, read_labels, write_labels
from clustering.manifest import ManifestError, read_manifest, write_manifest
from clustering.manifest_arrays import open_manifest, reroot_manifest


def same_manifest(arrays, text) -> bool:
    return (arrays.root == text.root and list(arrays.sizes) == list(text.sizes)
            and [arrays.paths[i] for i in range(len(arrays))] == list(text.paths)
            and [arrays.line_number(i) for i in range(len(arrays))] == [text.line_number(i) for i in range(len(text))])


def random_rows(count: int, seed: int = 0, units: int = 500) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, units, int(n)) for n in rng.integers(0, 40, count)]


def test_manifest_arrays_give_the_sizes_paths_and_root_of_the_text(tmp_path):
    entries = [(f"spk{i % 7}/chap {i % 3}/ütt-{i:05d}.flac", 1600 + 37 * i) for i in range(3000)]
    write_manifest(tmp_path / "train.tsv", tmp_path / "audio", entries)
    arrays = open_manifest(tmp_path / "train.tsv")
    assert same_manifest(arrays, read_manifest(tmp_path / "train.tsv")) and len(arrays) == 3000
    assert arrays.sizes.dtype == np.int64 and not arrays.sizes.flags.writeable  # memory-mapped, read-only
    assert arrays.audio_path(5) == (tmp_path / "audio").resolve() / "spk5/chap 2/ütt-00005.flac"
    # what read_manifest accepts that is not plain: blank lines, spaces around a size, more columns, CRLF
    (tmp_path / "odd.tsv").write_bytes(b"/data\r\na.flac\t 16000 \r\n\r\nb.flac\t32000\textra\r\nc.flac\t8")
    assert same_manifest(open_manifest(tmp_path / "odd.tsv"), read_manifest(tmp_path / "odd.tsv"))
    assert open_manifest(tmp_path / "odd.tsv").line_number(1) == 4


def test_a_malformed_manifest_is_the_same_error_as_reading_it(tmp_path):
    (tmp_path / "bad.tsv").write_text("/data\na.flac\t16000\nb.flac 16000\n")
    with pytest.raises(ManifestError, match=r"bad.tsv:3: expected 'relpath<TAB>num_samples'"):
        open_manifest(tmp_path / "bad.tsv")
    assert not arrays_path(tmp_path / "bad.tsv").exists()
    with pytest.raises(ManifestError, match="manifest not found"):
        open_manifest(tmp_path / "missing.tsv")


@pytest.mark.parametrize("units, dtype", [(500, np.uint16), (70_000, np.uint32)])
def test_label_arrays_give_the_rows_of_the_text(tmp_path, units, dtype):
    rows = random_rows(2000, units=units)
    rows[7] = np.zeros(0, np.int64)  # an utterance without labels
    write_labels(tmp_path / "train.km", rows)
    labels = write_label_arrays(tmp_path / "train.km", units)
    assert labels.values.dtype == dtype and len(labels) == 2000
    assert all(np.array_equal(a, b) for a, b in zip(read_labels(tmp_path / "train.km"), labels))
    assert labels.max_unit == max(int(r.max()) for r in rows if len(r))
    assert list(labels.lengths()) == [len(r) for r in rows]
    (tmp_path / "odd.km").write_bytes(b"1  2\t3\r\n\n+4 5\n6")  # runs of blanks, CRLF, a sign, no last newline
    assert [r.tolist() for r in open_label_arrays(tmp_path / "odd.km", 10)] == [[1, 2, 3], [], [4, 5], [6]]
    (tmp_path / "bad.km").write_text("1 2\n3 x\n")
    with pytest.raises(LabelError, match=r"bad.km:2: expected space-separated unit ids"):
        open_label_arrays(tmp_path / "bad.km", 10)


def test_stale_truncated_or_inconsistent_arrays_are_rebuilt_never_trusted(tmp_path):
    path = tmp_path / "train.km"
    write_labels(path, random_rows(300, seed=1))
    write_label_arrays(path, 500)
    newer = random_rows(250, seed=2)  # the text rewritten: fewer utterances, other ids
    write_labels(path, newer)
    assert [r.tolist() for r in open_label_arrays(path, 500)] == [r.tolist() for r in newer]
    target = arrays_path(path)
    target.write_bytes(target.read_bytes()[:-100])  # cut short by a crash or a full disk
    assert [r.tolist() for r in open_label_arrays(path, 500)] == [r.tolist() for r in newer]
    with ArrayWriter(target) as out:  # stamped for the text as it is, but the counts do not add up
        out.append("labels", np.zeros(10, np.uint16))
        out.append("offsets", np.array([0, 5, 9], np.int64))
        out.commit(text_stamp(path), {"max_unit": 0, "utterances": 2})
    assert [r.tolist() for r in open_label_arrays(path, 500)] == [r.tolist() for r in newer]
    before = target.stat().st_mtime_ns
    os.utime(path)  # touched: same bytes, new time; rebuilt rather than assumed unchanged
    assert len(open_label_arrays(path, 500)) == 250 and target.stat().st_mtime_ns != before
    assert not list(tmp_path.glob(".*.tmp"))


def test_rerooting_a_manifest_keeps_its_arrays(tmp_path, monkeypatch):
    write_manifest(tmp_path / "train.tsv", tmp_path / "old", [("a.flac", 16000), ("b/c.flac", 32000)])
    open_manifest(tmp_path / "train.tsv")
    assert reroot_manifest(tmp_path / "train.tsv", tmp_path / "new") and not reroot_manifest(
        tmp_path / "train.tsv", tmp_path / "new")
    monkeypatch.setattr(manifest_arrays, "_build", lambda *a: pytest.fail("rebuilt after a new root line"))
    moved = open_manifest(tmp_path / "train.tsv")
    assert moved.audio_path(1) == (tmp_path / "new").resolve() / "b/c.flac" and list(moved.sizes) == [16000, 32000]
    assert read_manifest(tmp_path / "train.tsv").paths == ("a.flac", "b/c.flac")


def _open_rows(path):
    return [r.tolist() for r in open_label_arrays(path, 500)]


def test_processes_racing_to_build_the_same_arrays_all_read_them_whole(tmp_path):
    path = tmp_path / "train.km"
    rows = random_rows(20_000, seed=3)
    write_labels(path, rows)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_open_rows, [path] * 8)
    assert all(result == [r.tolist() for r in rows] for result in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.km", "train.km.arrays"]

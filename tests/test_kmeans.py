"""k-means teachers recover planted clusters and survive a save/load."""
import numpy as np
import pytest

from clustering.kmeans import KMeansTeacher, fit_kmeans


def planted(num_units=12, dim=6, per_unit=400, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_units, dim)) * 8
    truth = np.repeat(np.arange(num_units), per_unit)
    return (centers[truth] + rng.normal(size=(len(truth), dim))).astype(np.float32), truth


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_recovers_planted_clusters(backend):
    feats, truth = planted()
    teacher = fit_kmeans(feats, 12, backend=backend)
    units = teacher.assign(feats)
    # every true cluster maps to one unit and vice versa
    pairs = set(zip(truth.tolist(), units.tolist()))
    assert len(pairs) == 12 and len({u for _, u in pairs}) == 12
    assert teacher.info.inertia == pytest.approx(teacher.inertia(feats))


def test_assign_is_nearest_centroid():
    rng = np.random.default_rng(1)
    teacher = KMeansTeacher(rng.normal(size=(30, 5)).astype(np.float32), None)
    x = rng.normal(size=(500, 5)).astype(np.float32)
    brute = ((x[:, None, :] - teacher.centroids[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(teacher.assign(x, batch=64), brute)


def test_save_load_and_pickle_needs_trust(tmp_path):
    feats, _ = planted(num_units=4)
    teacher = fit_kmeans(feats, 4, features="mfcc", fraction=0.1)
    teacher.save(tmp_path / "km.npy")
    loaded = KMeansTeacher.load(tmp_path / "km.npy")
    np.testing.assert_array_equal(loaded.centroids, teacher.centroids)
    assert loaded.info.features == "mfcc" and loaded.info.fraction == 0.1
    import joblib
    from sklearn.cluster import MiniBatchKMeans
    joblib.dump(MiniBatchKMeans(4, n_init=1, random_state=0).fit(feats), tmp_path / "km.bin")
    with pytest.raises(ValueError, match="--trust-pickle"):
        KMeansTeacher.load(tmp_path / "km.bin")
    assert KMeansTeacher.load(tmp_path / "km.bin", trust_pickle=True).num_units == 4


def test_too_few_frames_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 50 frames"):
        fit_kmeans(np.zeros((10, 3), np.float32), 50)


def test_a_failed_save_leaves_no_temporary_files(tmp_path):
    with pytest.raises(TypeError):  # no KMeansInfo to write
        KMeansTeacher(np.zeros((2, 3), np.float32), None).save(tmp_path / "km.npy")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "km.json").mkdir()  # the metadata cannot replace a folder
    teacher = fit_kmeans(planted(num_units=2)[0], 2)
    with pytest.raises(OSError):
        teacher.save(tmp_path / "km.npy")
    assert [p.name for p in tmp_path.iterdir()] == ["km.json"]


def test_loading_a_missing_teacher_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"km.npy: k-means teacher not found"):
        KMeansTeacher.load(tmp_path / "km.npy")

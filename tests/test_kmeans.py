"""k-means teachers recover planted clusters and survive a save/load."""
import numpy as np
import pytest

from clustering.kmeans import KMeansTeacher, fit_kmeans


def brute_inertia(feats, centroids) -> float:
    """Sum of squared distances to the nearest centroid, in float64, every distance computed."""
    x, c = feats.astype(np.float64), np.asarray(centroids, np.float64)
    return float(((x[:, None, :] - c[None]) ** 2).sum(-1).min(1).sum())


def planted(num_units=12, dim=6, per_unit=400, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_units, dim)) * 8
    truth = np.repeat(np.arange(num_units), per_unit)
    return (centers[truth] + rng.normal(size=(len(truth), dim))).astype(np.float32), truth


@pytest.mark.parametrize("backend", ["faiss", "sklearn", "torch"])
def test_recovers_planted_clusters(backend):
    feats, truth = planted()
    teacher = fit_kmeans(feats, 12, backend=backend)
    units = teacher.assign(feats)
    # every true cluster maps to one unit and vice versa
    pairs = set(zip(truth.tolist(), units.tolist()))
    assert len(pairs) == 12 and len({u for _, u in pairs}) == 12
    assert teacher.info.inertia == pytest.approx(brute_inertia(feats, teacher.centroids), rel=1e-5)


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


def mixture(seed, frames=20_000, dim=32, components=80):
    """Overlapping Gaussian clusters of unequal sizes and spreads: k-means has many local optima."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(components, dim))
    truth = rng.choice(components, frames, p=rng.dirichlet(np.ones(components)))
    spread = rng.uniform(0.5, 1.5, components)[truth, None]
    return (centres[truth] + rng.normal(size=(frames, dim)) * spread).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_torch_kmeans_inertia_is_within_one_percent_of_faiss_on_the_same_sample(seed):
    feats = mixture(seed)
    faiss_fit, torch_fit = (fit_kmeans(feats, 50, backend, seed=seed) for backend in ("faiss", "torch"))
    assert torch_fit.info.backend == "torch"
    assert torch_fit.info.inertia == pytest.approx(brute_inertia(feats, torch_fit.centroids), rel=1e-5)
    assert torch_fit.info.inertia <= 1.01 * faiss_fit.info.inertia, (torch_fit.info.inertia, faiss_fit.info.inertia)


def test_auto_backend_is_torch_on_a_gpu_and_faiss_on_the_cpu():
    import torch

    teacher = fit_kmeans(planted(num_units=4)[0], 4, "auto")
    assert teacher.info.backend == ("torch" if torch.cuda.is_available() else "faiss")
    assert fit_kmeans(planted(num_units=4)[0], 4, "auto", device="cpu").info.backend == "faiss"


def test_a_float16_sample_fits_as_well_in_half_the_memory():
    feats = mixture(0)
    half = feats.astype(np.float16)
    for backend in ("torch", "faiss"):
        exact, from_half = fit_kmeans(feats, 50, backend), fit_kmeans(half, 50, backend)
        assert from_half.inertia(feats) <= 1.01 * exact.inertia(feats)


def test_an_empty_cluster_takes_half_of_the_biggest():
    import torch

    from clustering.kmeans import _moved_centroids

    centroids = torch.tensor([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    sums = torch.tensor([[4.0, 4.0], [0.0, 0.0], [90.0, 90.0]], dtype=torch.float64)
    moved = _moved_centroids(centroids, sums, torch.tensor([4, 0, 10]))
    assert moved[0].tolist() == [1.0, 1.0]
    assert torch.allclose(moved[1], torch.tensor([9.0 * (1 + 1 / 1024), 9.0 * (1 - 1 / 1024)]))
    assert torch.allclose(moved[2], torch.tensor([9.0 * (1 - 1 / 1024), 9.0 * (1 + 1 / 1024)]))


def test_our_kmeans_plusplus_picks_scikit_learns_centres():
    import torch
    from sklearn.cluster import kmeans_plusplus as reference

    from clustering.kmeans import kmeans_plusplus

    for seed in range(3):
        feats = mixture(seed, frames=1600)
        ours = kmeans_plusplus(torch.from_numpy(feats), 50, seed).numpy()
        np.testing.assert_array_equal(ours, reference(feats, 50, random_state=seed)[0])


def test_kmeans_command_fits_a_budgeted_float16_sample_with_torch(tiny_manifest, tmp_path):
    import json

    from clustering.features import dump_features, mfcc_features
    from pipelines.cli import main

    dump_features(tiny_manifest, mfcc_features, tmp_path / "feat", "train")
    budget_gib = 300 * 39 * 2 / 2**30  # 300 float16 frames of 39 dims
    assert main(["kmeans", str(tmp_path / "feat"), "train", str(tmp_path / "km.npy"), "--num-units", "8",
                 "--percent", "1", "--backend", "torch", "--max-gib", repr(budget_gib), "--float16"]) == 0
    info = json.loads((tmp_path / "km.json").read_text())
    assert info["backend"] == "torch" and info["num_frames"] == 300 and info["inertia"] > 0


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU")
def test_torch_kmeans_on_the_gpu_matches_faiss_on_the_cpu():
    feats = mixture(0)
    on_gpu, on_cpu = fit_kmeans(feats, 50, "torch", device="cuda"), fit_kmeans(feats, 50, "faiss")
    assert on_gpu.info.inertia <= 1.01 * on_cpu.info.inertia

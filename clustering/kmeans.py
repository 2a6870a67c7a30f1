"""k-means teachers: fit on a sample of frames, save as centroids + JSON, assign labels.

Backends:
- "faiss" (default): the best of a few k-means++ seedings (scikit-learn's
  `kmeans_plusplus`) on subsamples, then exact Lloyd iterations with faiss over the
  whole sample.
- "sklearn": the reference recipe's `MiniBatchKMeans` with its exact parameters.

Memory: fitting holds the sampled frames once as float32, `4 * dim` bytes per
frame (156 B for MFCC, 3 KiB for 768-dim layers: 1M frames of layer 6 = 3 GiB),
plus faiss's assignment buffers (`4 * num_units` bytes per frame in blocks).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .paths import input_file

SEED_POINTS_PER_UNIT = 32  # k-means++ seeding runs on at most this many frames per unit
SEEDINGS = 2  # k-means++ seedings tried; the one with the lowest inertia on its subsample is kept


@dataclass
class KMeansInfo:
    """The JSON beside a teacher's centroids."""

    num_units: int
    dim: int
    backend: str
    fraction: float = 1.0  # fraction of utterances the sample was drawn from
    num_frames: int = 0  # frames the fit saw
    inertia: float = 0.0  # sum of squared distances of those frames to their centroid
    seconds: float = 0.0
    features: str = ""  # what the frames were ("mfcc", "layer6 of ...")
    seed: int = 0


class KMeansTeacher:
    """Centroids (num_units, dim) and nearest-centroid assignment."""

    def __init__(self, centroids: np.ndarray, info: KMeansInfo):
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.info = info
        self._sq_norms = (self.centroids.astype(np.float64) ** 2).sum(1).astype(np.float32)

    @property
    def num_units(self) -> int:
        return self.centroids.shape[0]

    def assign(self, feats: np.ndarray, batch: int = 65536) -> np.ndarray:
        """Nearest centroid (squared L2) per frame: feats (frames, dim) -> (frames,) int64."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"features of shape {feats.shape} do not match a teacher of dim "
                             f"{self.centroids.shape[1]}")
        out = np.empty(len(feats), np.int64)
        for start in range(0, len(feats), batch):
            block = feats[start:start + batch]
            # ||x||^2 is the same for every centroid, so argmin needs only -2 x.c + ||c||^2
            scores = self._sq_norms[None, :] - 2.0 * (block @ self.centroids.T)
            out[start:start + batch] = scores.argmin(1)
        return out

    def inertia(self, feats: np.ndarray) -> float:
        """Sum of squared distances of `feats` to their nearest centroid."""
        units = self.assign(feats)
        return float(((np.asarray(feats, np.float64) - self.centroids[units]) ** 2).sum())

    def save(self, path: str | Path) -> None:
        """Write `path` (.npy centroids) and `path` with .json (KMeansInfo).

        Both are written under temporary names and renamed when complete; on any error
        the temporary files are removed, so a failed save leaves nothing half-written.
        """
        path = Path(path)
        meta = path.with_suffix(".json")
        tmp_npy, tmp_meta = path.with_name(path.stem + ".tmp.npy"), meta.with_name(meta.stem + ".tmp.json")
        try:
            np.save(tmp_npy, self.centroids)
            tmp_meta.write_text(json.dumps(asdict(self.info), indent=2) + "\n")
            os.replace(tmp_meta, meta)
            os.replace(tmp_npy, path)
        finally:
            for tmp in (tmp_npy, tmp_meta):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    @classmethod
    def load(cls, path: str | Path, trust_pickle: bool = False) -> "KMeansTeacher":
        """Load our .npy teacher, or fairseq's joblib k-means (only with `trust_pickle`)."""
        path = input_file(path, "k-means teacher")
        if path.suffix == ".npy":
            meta = path.with_suffix(".json")
            centroids = np.load(path)
            info = KMeansInfo(**json.loads(meta.read_text())) if meta.exists() else \
                KMeansInfo(num_units=len(centroids), dim=centroids.shape[1], backend="unknown")
            return cls(centroids, info)
        if not trust_pickle:
            raise ValueError(f"{path}: not a .npy teacher; fairseq joblib k-means files are pickles "
                             "that can run code when loaded: pass --trust-pickle if you trust it")
        import joblib

        model = joblib.load(path)
        centroids = np.asarray(model.cluster_centers_, dtype=np.float32)
        return cls(centroids, KMeansInfo(len(centroids), centroids.shape[1], "sklearn-joblib"))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fit_kmeans(feats: np.ndarray, num_units: int, backend: str = "faiss", seed: int = 0,
               iterations: int = 15, fraction: float = 1.0, features: str = "") -> KMeansTeacher:
    """Fit a teacher on `feats` (frames, dim) float32, already sampled.

    `fraction` and `features` are recorded in the metadata only.
    """
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    if len(feats) < num_units:
        raise ValueError(f"k-means needs at least {num_units} frames for {num_units} units, "
                         f"got {len(feats)}; sample a larger fraction")
    begin = time.time()
    if backend == "faiss":
        centroids = _fit_faiss(feats, num_units, seed, iterations)
    elif backend == "sklearn":
        centroids = _fit_sklearn(feats, num_units)
    else:
        raise ValueError(f"unknown k-means backend {backend!r}; use 'faiss' or 'sklearn'")
    info = KMeansInfo(num_units, feats.shape[1], backend, fraction, len(feats), 0.0,
                      0.0, features, seed)
    teacher = KMeansTeacher(centroids, info)
    info.inertia = teacher.inertia(feats)
    info.seconds = round(time.time() - begin, 2)
    return teacher


def _fit_faiss(feats: np.ndarray, num_units: int, seed: int, iterations: int) -> np.ndarray:
    """Best of SEEDINGS k-means++ seedings (on subsamples, scored on their subsample), then
    Lloyd iterations with faiss over all frames: the seed quality of the reference recipe's
    k-means++ restarts at the cost of one exact k-means run."""
    import faiss
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    seed_size = min(len(feats), SEED_POINTS_PER_UNIT * num_units)
    best, best_score = None, np.inf
    for attempt in range(SEEDINGS):
        subset = feats[np.sort(rng.choice(len(feats), seed_size, replace=False))]
        init, _ = kmeans_plusplus(subset, num_units, random_state=seed + attempt)
        score = KMeansTeacher(init, None).inertia(subset)
        if score < best_score:
            best, best_score = init, score
    kmeans = faiss.Kmeans(feats.shape[1], num_units, niter=iterations, seed=seed,
                          max_points_per_centroid=len(feats) // num_units + 1, verbose=False)
    kmeans.train(feats, init_centroids=np.ascontiguousarray(best, dtype=np.float32))
    return kmeans.centroids


def _fit_sklearn(feats: np.ndarray, num_units: int) -> np.ndarray:
    from sklearn.cluster import MiniBatchKMeans

    model = MiniBatchKMeans(n_clusters=num_units, init="k-means++", max_iter=100,
                            batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
                            reassignment_ratio=0.0, compute_labels=False, random_state=0)
    model.fit(feats)
    return model.cluster_centers_

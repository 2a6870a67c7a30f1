"""k-means teachers: fit on a sample of frames, save as centroids + JSON, assign labels.

Backends (one recipe: the best of a few k-means++ seedings on subsamples, then exact Lloyd
iterations over the whole sample; the seeding is `kmeans_plusplus`, scikit-learn's algorithm and
random draws in torch, so every backend but sklearn starts from the same centres):
- "faiss": Lloyd iterations with faiss on the CPU.
- "torch": Lloyd iterations in torch, on the GPU when one is present (or on `device`); the same
  updates as faiss, so the same centroids up to rounding.
- "auto": "torch" when the device is a GPU, else "faiss".
- "sklearn": the reference recipe's `MiniBatchKMeans` with its exact parameters.

Memory: fitting holds the sample once, `dim * itemsize` bytes per frame (3 KiB per 768-dim
frame in float32, half in float16: subsample it with `FeatureShards.sample(max_bytes=...)`).
faiss and sklearn need float32 (a float16 sample is copied once); torch reads float16 blocks
as they are and keeps the sample on the GPU when it fits in half its free memory, else moves
it block by block. Assignment works in blocks of `BLOCK` frames (`4 * num_units` bytes each).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_write, write_text
from .path_checks import input_file
from .text_files import read_json

SEED_POINTS_PER_UNIT = 32  # k-means++ seeding runs on at most this many frames per unit
SEEDINGS = 2  # k-means++ seedings tried; the one with the lowest inertia on its subsample is kept
BLOCK = 65536  # frames assigned at a time
BACKENDS = ("auto", "faiss", "torch", "sklearn")


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
        self._on_device = {}

    @property
    def num_units(self) -> int:
        return self.centroids.shape[0]

    def assign(self, feats: np.ndarray, batch: int = BLOCK) -> np.ndarray:
        """Nearest centroid (squared L2) per frame: feats (frames, dim) -> (frames,) int64."""
        import torch

        return self.nearest(torch.as_tensor(np.asarray(feats, dtype=np.float32)), batch).numpy()

    def nearest(self, feats, batch: int = BLOCK):
        """`assign` for a torch tensor, on its device: (frames, dim) -> (frames,) int64 tensor."""
        if feats.ndim != 2 or feats.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"features of shape {tuple(feats.shape)} do not match a teacher of dim "
                             f"{self.centroids.shape[1]}")
        return nearest_centroid(feats, *self._tensors(feats.device), batch)

    def _tensors(self, device):
        """(centroids, squared norms) as tensors on `device`, made once per device."""
        import torch

        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = (torch.from_numpy(self.centroids).to(device),
                                    torch.from_numpy(self._sq_norms).to(device))
        return self._on_device[key]

    def inertia(self, feats: np.ndarray, device: str = "cpu") -> float:
        """Sum of squared distances of `feats` (frames, dim) to their nearest centroid, block by
        block on `device` (a float16 sample is read as it is)."""
        import torch

        centroids = self._tensors(device)[0]
        total = 0.0
        for start in range(0, len(feats), BLOCK):
            x = torch.as_tensor(feats[start:start + BLOCK]).to(device).float()
            nearest = centroids[self.nearest(x)]
            total += float(torch.sum((x - nearest) ** 2, dtype=torch.float64))
        return total

    def save(self, path: str | Path) -> None:
        """Write `path` (.npy centroids) and `path` with .json (KMeansInfo).

        Both are written under temporary names (`atomic_write`) and renamed when complete, the
        .json first, so a failed save leaves nothing half-written.
        """
        path = Path(path)
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, self.centroids)
            write_text(path.with_suffix(".json"), json.dumps(asdict(self.info), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, trust_pickle: bool = False) -> "KMeansTeacher":
        """Load our .npy teacher, or fairseq's joblib k-means (only with `trust_pickle`)."""
        path = input_file(path, "k-means teacher")
        if path.suffix == ".npy":
            meta = path.with_suffix(".json")
            centroids = np.load(path)
            info = _read_info(meta) if meta.exists() else \
                KMeansInfo(num_units=len(centroids), dim=centroids.shape[1], backend="unknown")
            return cls(centroids, info)
        if not trust_pickle:
            raise ValueError(f"{path}: not a .npy teacher; fairseq joblib k-means files are pickles "
                             "that can run code when loaded: pass --trust-pickle if you trust it")
        import joblib

        model = joblib.load(path)
        centroids = np.asarray(model.cluster_centers_, dtype=np.float32)
        return cls(centroids, KMeansInfo(len(centroids), centroids.shape[1], "sklearn-joblib"))


def _read_info(path: Path) -> KMeansInfo:
    """The KMeansInfo in `path` (a teacher's .json); ValueError naming the file and the fix."""
    fix = "fit the teacher again with `hubert kmeans`, or delete the .json to load the centroids alone"
    data = read_json(path, fix)
    try:
        return KMeansInfo(**data)
    except TypeError as error:  # not an object, a key missing or unknown
        raise ValueError(f"{path}: not the settings of a k-means teacher ({error}); {fix}") from None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nearest_centroid(x, centroids, sq_norms, batch: int = BLOCK):
    """x (frames, dim), centroids (K, dim) float32 and their squared norms (K,), one device
    -> (frames,) int64 index of the nearest centroid (squared L2), in blocks of `batch` frames."""
    import torch

    out = torch.empty(len(x), dtype=torch.long, device=x.device)
    for start in range(0, len(x), batch):
        block = x[start:start + batch].float()
        # ||x||^2 is the same for every centroid, so argmin needs only -2 x.c + ||c||^2
        out[start:start + batch] = (sq_norms[None, :] - 2.0 * (block @ centroids.T)).argmin(1)
    return out


def fit_kmeans(feats: np.ndarray, num_units: int, backend: str = "faiss", seed: int = 0,
               iterations: int = 15, fraction: float = 1.0, features: str = "",
               device: str = "auto") -> KMeansTeacher:
    """Fit a teacher on `feats` (frames, dim) float32 or float16, already sampled.

    `device` is where the torch backend runs ("auto": the GPU when present); `fraction` and
    `features` are recorded in the metadata only.
    """
    if len(feats) < num_units:
        raise ValueError(f"k-means needs at least {num_units} frames for {num_units} units, "
                         f"got {len(feats)}; sample a larger fraction")
    device = _device(device)
    backend = ("torch" if device.startswith("cuda") else "faiss") if backend == "auto" else backend
    begin = time.time()
    if backend == "torch":
        centroids = _fit_torch(feats, num_units, seed, iterations, device)
    elif backend == "faiss":
        centroids = _fit_faiss(np.ascontiguousarray(feats, dtype=np.float32), num_units, seed, iterations)
    elif backend == "sklearn":
        centroids = _fit_sklearn(np.ascontiguousarray(feats, dtype=np.float32), num_units)
    else:
        raise ValueError(f"unknown k-means backend {backend!r}; use {', '.join(map(repr, BACKENDS))}")
    info = KMeansInfo(num_units, feats.shape[1], backend, fraction, len(feats), 0.0, 0.0, features, seed)
    teacher = KMeansTeacher(centroids, info)
    info.inertia = teacher.inertia(feats, device if backend == "torch" else "cpu")
    info.seconds = round(time.time() - begin, 2)
    return teacher


def _device(device: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def _best_seeding(feats: np.ndarray, num_units: int, seed: int, device: str = "cpu") -> np.ndarray:
    """The best of SEEDINGS k-means++ seedings (`kmeans_plusplus` on `device`), each on its own
    subsample of at most SEED_POINTS_PER_UNIT frames per unit, scored by inertia on that subsample:
    (K, dim) float32."""
    import torch

    rng = np.random.default_rng(seed)
    seed_size = min(len(feats), SEED_POINTS_PER_UNIT * num_units)
    best, best_score = None, np.inf
    bar = _bar(SEEDINGS * num_units, f"k-means++ seeding ({SEEDINGS} tries on {seed_size} frames)", "centre")
    for attempt in range(SEEDINGS):
        subset = np.ascontiguousarray(feats[np.sort(rng.choice(len(feats), seed_size, replace=False))],
                                      dtype=np.float32)
        init = kmeans_plusplus(torch.from_numpy(subset).to(device), num_units, seed + attempt,
                               bar.update).cpu().numpy()
        score = KMeansTeacher(init, None).inertia(subset, device)
        if score < best_score:
            best, best_score = init, score
    bar.close()
    return best


def _bar(total: int, desc: str, unit: str) -> tqdm:
    """A progress bar on stderr over range(total), redrawn at most every 2 s (k-means on a large
    sample takes minutes); `update` it instead when not iterating over it."""
    return tqdm(range(total), desc=desc, unit=unit, mininterval=2)


def _fit_faiss(feats: np.ndarray, num_units: int, seed: int, iterations: int) -> np.ndarray:
    """Best k-means++ seeding, then Lloyd iterations with faiss over all frames: the seed quality of
    the reference recipe's k-means++ restarts at the cost of one exact k-means run."""
    import faiss

    centroids = _best_seeding(feats, num_units, seed)
    # one faiss call per iteration, for the progress bar: the same centroids as one call of
    # `iterations` (faiss starts each from the centroids given, and splits empty clusters with a
    # generator seeded afresh at every iteration either way)
    for _ in _bar(iterations, f"k-means iterations ({len(feats)} frames)", "it"):
        kmeans = faiss.Kmeans(feats.shape[1], num_units, niter=1, seed=seed,
                              max_points_per_centroid=len(feats) // num_units + 1, verbose=False)
        kmeans.train(feats, init_centroids=centroids)
        centroids = kmeans.centroids
    return centroids


def _fit_torch(feats: np.ndarray, num_units: int, seed: int, iterations: int, device: str) -> np.ndarray:
    """The faiss recipe in torch on `device`: best k-means++ seeding, then `iterations` Lloyd steps
    (assign every frame, move each centroid to its frames' mean, split a big cluster for an empty one)."""
    import torch

    centroids = torch.from_numpy(_best_seeding(feats, num_units, seed, device)).to(device)
    data = _resident(torch.from_numpy(np.ascontiguousarray(feats)), device)
    for _ in _bar(iterations, f"k-means iterations ({len(feats)} frames)", "it"):
        sums, counts = _cluster_sums(data, centroids, device)
        centroids = _moved_centroids(centroids, sums, counts)
    return centroids.cpu().numpy()


def kmeans_plusplus(points, num_units: int, seed: int, progress=None):
    """Greedy k-means++ in torch on the points' device, as scikit-learn's `kmeans_plusplus`: 2 + ln K
    local trials per centre, the one that lowers the potential most kept, with the very random draws
    of its `RandomState(seed)` (they do not depend on the data, so they are drawn up front) and
    distances in float64, so it picks the same centres. points (n, dim) float32 -> (num_units, dim).
    `progress(1)` is called after each centre chosen (a progress bar's update)."""
    import torch

    count = len(points)
    state = np.random.RandomState(seed)
    weights = np.ones(count, dtype=np.float32)  # scikit-learn's sample weights of a float32 sample
    first = int(state.choice(count, p=weights / weights.sum()))
    trials = 2 + int(np.log(num_units))
    draws = torch.from_numpy(state.uniform(size=(num_units - 1, trials))).to(points.device)
    x = points.double()
    sq_norms = x.pow(2).sum(1)
    closest = _squared_distances(x[first:first + 1], x, sq_norms)[0]  # (n,)
    potential = closest.sum()
    chosen = [torch.tensor(first, device=points.device)]
    progress = progress or (lambda count: None)
    progress(1)
    for step in range(num_units - 1):
        candidates = torch.searchsorted(torch.cumsum(closest, 0), draws[step] * potential).clamp(max=count - 1)
        distances = torch.minimum(closest[None, :], _squared_distances(x[candidates], x, sq_norms))
        potentials = distances.sum(1)
        best = potentials.argmin()
        closest, potential = distances[best], potentials[best]
        chosen.append(candidates[best])
        progress(1)
    return points[torch.stack(chosen)]


def _squared_distances(a, b, b_sq_norms):
    """a (m, dim), b (n, dim) -> (m, n) squared L2 distances, clamped at 0."""
    return (a.pow(2).sum(1)[:, None] + b_sq_norms[None, :] - 2.0 * (a @ b.T)).clamp_(min=0)


def _resident(data, device: str):
    """The sample on `device` when it takes at most half the GPU's free memory, else on the host
    (then moved block by block at every iteration)."""
    import torch

    if device.startswith("cuda") and data.nbytes <= torch.cuda.mem_get_info(device)[0] // 2:
        return data.to(device)
    return data


def _cluster_sums(data, centroids, device: str):
    """Assign every frame of `data` (n, dim) to its nearest centroid: (K, dim) float64 sums of the
    frames of each centroid and (K,) counts."""
    import torch

    sq_norms = centroids.pow(2).sum(1)
    sums = torch.zeros(centroids.shape, dtype=torch.float64, device=device)
    counts = torch.zeros(len(centroids), dtype=torch.long, device=device)
    for start in range(0, len(data), BLOCK):
        x = data[start:start + BLOCK].to(device, non_blocking=True).float()
        units = nearest_centroid(x, centroids, sq_norms)
        sums += torch.zeros_like(centroids).index_add_(0, units, x)  # float32 per block, float64 overall
        counts += torch.bincount(units, minlength=len(centroids))
    return sums, counts


SPLIT_EPS = 1 / 1024  # relative nudge that separates the two halves of a split cluster (faiss's value)


def _moved_centroids(centroids, sums, counts):
    """Each centroid at the mean of its frames; an empty one takes half of the biggest cluster:
    the two start from its centre nudged apart by SPLIT_EPS (as faiss does)."""
    import torch

    moved = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids.double()).float()
    counts = counts.clone()
    sign = torch.ones(moved.shape[1], device=moved.device)
    sign[1::2] = -1
    for empty in (counts == 0).nonzero()[:, 0].tolist():
        big = int(counts.argmax())
        centre = moved[big].clone()
        moved[empty], moved[big] = centre * (1 + SPLIT_EPS * sign), centre * (1 - SPLIT_EPS * sign)
        counts[empty] = counts[big] // 2
        counts[big] -= counts[empty]
    return moved


def _fit_sklearn(feats: np.ndarray, num_units: int) -> np.ndarray:
    from sklearn.cluster import MiniBatchKMeans

    model = MiniBatchKMeans(n_clusters=num_units, init="k-means++", max_iter=100,
                            batch_size=10000, tol=0.0, max_no_improvement=100, n_init=20,
                            reassignment_ratio=0.0, compute_labels=False, random_state=0)
    with _heartbeat(f"k-means (sklearn, {len(feats)} frames)"):
        model.fit(feats)
    return model.cluster_centers_


@contextlib.contextmanager
def _heartbeat(desc: str, every: float = 10.0):
    """A line on stderr every `every` seconds while the block runs: scikit-learn's fit reports nothing."""
    stop, start = threading.Event(), time.time()

    def beat():
        while not stop.wait(every):
            print(f"{desc}: still fitting, {time.time() - start:.0f} s", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

"""Feature shards on disk: a streaming .npy writer and a streaming reader.

The reader never loads a whole shard: each utterance is one positional read
from its `.npy`, so iterating holds one utterance at a time (a memory map
would count every page it touched as resident), and `sample` copies only the
utterances it draws: memory is bounded by the sample (frames x dim x 4 bytes), or by a byte
budget when one is given (frames subsampled, float16 allowed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

_HEADER_BYTES = 128  # fixed, so the final shape can be patched in place


class NpyRowWriter:
    """Append (rows, dim) float32 blocks to a .npy file whose length is not known in advance."""

    def __init__(self, path: Path):
        self.path, self.rows, self.dim = Path(path), 0, None
        self.file = open(self.path, "wb")
        self.file.write(b"\0" * _HEADER_BYTES)

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.ndim != 2:
            raise ValueError(f"{self.path}: features must be (frames, dim), got shape {block.shape}")
        if self.dim is None:
            self.dim = block.shape[1]
        elif block.shape[1] != self.dim:
            raise ValueError(f"{self.path}: feature dim changed from {self.dim} to {block.shape[1]}")
        self.file.write(block.tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        header = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim or 0)})
        prefix = b"\x93NUMPY\x01\x00"
        body = header.encode("latin1")
        pad = _HEADER_BYTES - len(prefix) - 2 - len(body) - 1
        self.file.seek(0)
        self.file.write(prefix + (_HEADER_BYTES - len(prefix) - 2).to_bytes(2, "little")
                        + body + b" " * pad + b"\n")
        self.file.flush()
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, *rest):
        if kind is None:
            self.close()
        else:
            self.file.close()


class FeatureShards:
    """All shards of one split, read as one sequence of per-utterance arrays.

    `FeatureShards(dir, "train", nshard)` reads `train_{r}_{nshard}.npy` for every
    rank r. `len()` is the number of utterances; `[i]` is (frames_i, dim).
    """

    def __init__(self, feature_dir: str | Path, split: str, nshard: int = 1,
                 ranks: range | None = None):
        self.files, self.index = [], []  # files: (path, dim, data offset); index[i] = (file, start row, frames)
        for rank in ranks if ranks is not None else range(nshard):
            stem = Path(feature_dir) / f"{split}_{rank}_{nshard}"
            npy, lens = stem.with_suffix(".npy"), stem.with_suffix(".len")
            if not (npy.exists() and lens.exists()):
                raise FileNotFoundError(f"{npy}: feature shard missing; run `hubert features` "
                                        f"with --rank {rank} --nshard {nshard}")
            rows, dim, data_offset = _npy_layout(npy)
            offset = 0
            for n in map(int, lens.read_text().split()):
                self.index.append((len(self.files), offset, n))
                offset += n
            if offset != rows:
                raise ValueError(f"{npy}: {rows} rows but {lens} adds up to {offset}")
            self.files.append((npy, dim, data_offset))
        self.dim = self.files[0][1] if self.files else 0

    @classmethod
    def single(cls, feature_dir: str | Path, split: str, rank: int, nshard: int) -> "FeatureShards":
        """Only shard `rank` of `nshard`."""
        return cls(feature_dir, split, nshard, range(rank, rank + 1))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        """Features of utterance i, (frames, dim) float32."""
        shard, start, frames = self.index[i]
        path, dim, data_offset = self.files[shard]
        flat = np.fromfile(path, dtype=np.float32, count=frames * dim, offset=data_offset + start * dim * 4)
        return flat.reshape(frames, dim)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    @property
    def num_frames(self) -> int:
        return sum(frames for _, _, frames in self.index)

    def sample(self, fraction: float, seed: int = 0, max_bytes: int = 0, dtype=np.float32) -> np.ndarray:
        """Frames of a random `fraction` of utterances, (frames, dim) `dtype`, copied from disk.

        With `max_bytes` > 0 at most that many bytes are filled: when the utterances hold more
        frames, a uniform random subset of their frames (kept in order) is taken, so memory is
        bounded by `max_bytes` however large the fraction (float16 halves the bytes per frame).
        """
        indices = sample_utterances(len(self), fraction, seed)
        counts = np.array([self.index[i][2] for i in indices], dtype=np.int64)
        total = int(counts.sum())
        fits = max_bytes // (max(self.dim, 1) * np.dtype(dtype).itemsize) if max_bytes > 0 else total
        keep = None if fits >= total else np.sort(np.random.default_rng(seed).choice(total, fits, replace=False))
        out = np.empty((total if keep is None else len(keep), self.dim), dtype)
        filled, first = 0, 0  # rows written; index of the current utterance's first frame in the sample
        bar = tqdm(zip(indices, counts), total=len(indices), desc=f"k-means sample ({out.nbytes / 2**20:.0f} MiB)",
                   unit="utt", mininterval=2)
        for i, count in bar:
            rows = self[i]
            if keep is not None:
                rows = rows[keep[np.searchsorted(keep, first):np.searchsorted(keep, first + count)] - first]
            out[filled:filled + len(rows)] = rows
            filled, first = filled + len(rows), first + count
        return out


def sample_utterances(count: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of round(fraction * count) utterances (at least 1), fixed by `seed`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    take = min(count, max(1, round(fraction * count)))
    return np.sort(np.random.default_rng(seed).choice(count, size=take, replace=False))



def _npy_layout(path: Path) -> tuple[int, int, int]:
    """(rows, dim, byte offset of the data) of a 2-D float32 .npy, read from its header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if len(shape) != 2 or fortran or dtype != np.float32:
            raise ValueError(f"{path}: expected a (frames, dim) float32 array, got {dtype} {shape}")
        return shape[0], shape[1], f.tell()

"""Teacher features from a trained model: the output of transformer layers, in padded batches.

`LayerFeatures(encoder, layer, device="auto")` is both
- a `wav -> (frames, dim)` callable for one utterance (and `layers(wav, [..])` for several
  layers from one pass: the interface of clustering's layer scans), and
- `stream(manifest, lines, reduce)`: the features of manifest lines, in line order, computed in
  length-sorted padded batches planned once for the whole manifest (`plan_feature_batches`), with the
  audio decoded ahead of the model by DataLoader workers. This is what dumps and labels use.

Both go through one forward step: utterances cut into chunks of at most `max_chunk` samples (as
fairseq's feature reader), padded into one (rows, width) batch, run under bf16 autocast on CUDA
(float32 on the CPU), float32 out. The encoder ignores padding (masked group norm, masked
attention, zeroed padded frames before the positional conv), so a padded batch gives each
utterance the features it gets alone (tested to 1e-4 in float32).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from clustering.audio import SAMPLE_RATE, AudioError, load_listed_audio, receptive_field
from clustering.features import FeatureError, check_audio_length
from clustering.threads import torch_threads
from clustering.manifest import Manifest

from .model import HubertEncoder, normalize_waveform

MAX_CHUNK = 1_600_000  # samples per row (100 s), as fairseq's feature reader
BATCH_SECONDS = {"cpu": 30.0, "cuda": 600.0}  # padded audio per forward pass, by device type
WINDOW_BATCHES = 8  # batches planned together from consecutive manifest lines
CUDA_LOADER_WORKERS = 8  # audio decoding processes ahead of a GPU (at most; one when on the CPU)

Reduce = Callable[[torch.Tensor], torch.Tensor]  # (frames, dim) float32 -> (frames, ...) on the model's device


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" is the GPU when one is present, else the CPU; other names are torch's."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------- planning: lengths -> batches

class Row(NamedTuple):
    utterance: int  # manifest index
    start: int  # first sample of this chunk
    samples: int  # chunk length, from the manifest


@dataclass(frozen=True)
class FeatureBatch:
    """Rows computed in one padded forward pass, longest first."""

    rows: tuple[Row, ...]

    @property
    def padded_samples(self) -> int:
        return len(self.rows) * self.rows[0].samples


@dataclass(frozen=True)
class FeaturePlan:
    """Batches of rows as flat arrays, no Python object per row: batch b holds rows
    bounds[b]:bounds[b + 1] of `utterance`, `start` and `samples` ((rows,) int64 each; bounds
    (batches + 1,) int64). `plan[b]` is batch b as a FeatureBatch, made when asked for."""

    utterance: np.ndarray
    start: np.ndarray
    samples: np.ndarray
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, batch: int) -> FeatureBatch:
        if not 0 <= batch < len(self):
            raise IndexError(batch)
        rows = slice(self.bounds[batch], self.bounds[batch + 1])
        return FeatureBatch(tuple(Row(*row) for row in zip(self.utterance[rows].tolist(), self.start[rows].tolist(),
                                                          self.samples[rows].tolist())))

    def __iter__(self) -> Iterator[FeatureBatch]:
        return (self[b] for b in range(len(self)))

    def select(self, batches: np.ndarray) -> "FeaturePlan":
        """The plan of batches `batches` (ascending batch numbers), in that order."""
        first, last = self.bounds[batches], self.bounds[batches + 1]
        counts = last - first
        rows = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        return FeaturePlan(self.utterance[rows], self.start[rows], self.samples[rows],
                           np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def plan_feature_batches(sizes: np.ndarray, batch_samples: int, max_chunk: int = MAX_CHUNK,
                         window_batches: int = WINDOW_BATCHES) -> FeaturePlan:
    """Batches for a whole split from its lengths alone (`sizes`: (lines,) samples per manifest line).

    Consecutive lines are grouped into windows of about `window_batches * batch_samples`
    samples; each window's chunks (at most `max_chunk` samples, as fairseq cuts long files)
    are sorted longest first and packed while rows * longest <= `batch_samples` (a longer
    chunk is a batch of its own). A worker
    computes the batches holding any of its lines: the same batches whatever the number of
    workers (so the same features, bit for bit), at the cost of at most two windows of other
    workers' lines. Vectorised in numpy: no Python object per line or row.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    window = _windows(sizes, window_batches * batch_samples)
    chunks = -(-sizes // max_chunk)
    utterance = np.repeat(np.arange(len(sizes)), chunks)
    start = (np.arange(len(utterance)) - np.repeat(np.cumsum(chunks) - chunks, chunks)) * max_chunk
    samples = np.minimum(max_chunk, sizes[utterance] - start)
    # rows come in (window, utterance, start) order already: a stable sort by (window, longest first)
    # orders them by (window, -samples, utterance, start)
    order = np.argsort(window[utterance] * (max_chunk + 1) + (max_chunk - samples), kind="stable")
    utterance, start, samples = utterance[order], start[order], samples[order]
    return FeaturePlan(utterance, start, samples, _pack(samples, window[utterance], batch_samples))


def _windows(sizes: np.ndarray, window_samples: int) -> np.ndarray:
    """(lines,) the window of each line: consecutive lines adding up to at least `window_samples`
    (the last: the rest)."""
    total = np.cumsum(sizes)
    before = total - sizes
    # a window starting at line s ends at the first line i with total[i] - before[s] >= window_samples
    following = memoryview(np.minimum(np.searchsorted(total, before + window_samples, side="left"),
                                      len(sizes) - 1) + 1)  # the line after the window from each line
    firsts, line = np.zeros(len(sizes), bool), 0
    while line < len(sizes):
        firsts[line] = True
        line = following[line]
    return np.cumsum(firsts) - 1


def _pack(samples: np.ndarray, window: np.ndarray, batch_samples: int) -> np.ndarray:
    """Batch bounds of rows sorted by window, then longest first: within each window a batch from
    row s takes max(1, batch_samples // samples[s]) rows (its first is its longest), or the
    window's rest. Every window is walked at once, one batch per step."""
    count = len(samples)
    if not count:
        return np.zeros(1, np.int64)
    window_end = np.cumsum(np.bincount(window))[window]  # one past each row's window
    following = np.minimum(window_end, np.arange(count) + np.maximum(1, batch_samples // samples))
    starts, current = [], np.flatnonzero(np.diff(window, prepend=-1))
    while len(current):
        starts.append(current)
        ahead = following[current]
        current = ahead[ahead < window_end[current]]
    return np.append(np.sort(np.concatenate(starts)), count)


def batches_for(plan: FeaturePlan, lines: range) -> FeaturePlan:
    """The batches of `plan` holding any of `lines` (a range of manifest lines)."""
    mine = (plan.utterance >= lines.start) & (plan.utterance < lines.stop)
    if lines.step != 1:
        mine &= (plan.utterance - lines.start) % lines.step == 0
    if not len(plan):
        return plan
    return plan.select(np.flatnonzero(np.add.reduceat(mine, plan.bounds[:-1])))


# ---------------------------------------------------------------- loading: batch -> padded audio

class PaddedRows(NamedTuple):
    rows: tuple[Row, ...]
    wav: torch.Tensor  # (rows, width) float32, zero after each row's length
    lengths: torch.Tensor  # (rows,) int64 valid samples


def pad_rows(chunks: list[torch.Tensor], min_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D waveforms -> (rows, width) zero-padded float32 and (rows,) lengths; width >= min_width."""
    lengths = torch.tensor([len(c) for c in chunks], dtype=torch.long)
    wav = torch.zeros(len(chunks), max(int(lengths.max()), min_width), dtype=torch.float32)
    for i, chunk in enumerate(chunks):
        wav[i, :len(chunk)] = chunk
    return wav, lengths


class BatchAudio(torch.utils.data.Dataset):
    """Batch k of `batches` decoded, normalised when the model wants it, cut and padded.

    An unreadable or too short file comes back as the error naming it (raised by the consumer,
    so a loader worker's traceback does not bury the message).
    """

    def __init__(self, manifest: Manifest, batches: FeaturePlan, max_chunk: int, normalize: bool,
                 min_width: int):
        self.manifest, self.batches, self.max_chunk = manifest, batches, max_chunk
        self.normalize, self.min_width = normalize, min_width

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> PaddedRows | Exception:
        rows = self.batches[k].rows
        try:
            wavs = {u: self._decode(u) for u in dict.fromkeys(row.utterance for row in rows)}
        except (AudioError, FeatureError, OSError) as error:
            return error
        chunks = [wavs[row.utterance][row.start:row.start + self.max_chunk] for row in rows]
        return PaddedRows(rows, *pad_rows(chunks, self.min_width))

    def _decode(self, index: int) -> torch.Tensor:
        """The whole utterance, (samples,) float32, normalised over all of it when the model was trained so."""
        path, line = self.manifest.audio_path(index), self.manifest.line_number(index)
        wav = torch.from_numpy(load_listed_audio(path, line))
        check_audio_length(path, line, len(wav))
        if len(wav) > -(-self.manifest.sizes[index] // self.max_chunk) * self.max_chunk:
            raise FeatureError(f"{path} (manifest line {line}): decodes to {len(wav)} samples but the "
                               f"manifest lists {self.manifest.sizes[index]}; rescan with `hubert manifest`")
        return whole_utterance(wav, self.normalize)


def whole_utterance(wav: torch.Tensor, normalize: bool) -> torch.Tensor:
    """(samples,) -> (samples,), layer-normalised over the whole utterance when `normalize`
    (before it is cut into chunks, as fairseq's reader)."""
    if not normalize:
        return wav
    return normalize_waveform(wav[None], torch.tensor([len(wav)]))[0]


# ---------------------------------------------------------------- computing: padded audio -> features

class LayerFeatures:
    """Output of transformer layer `layer` (1-based), no masking, eval mode, on `device`.

    precision: "auto" (bf16 autocast on CUDA, float32 on the CPU), "bf16" or "fp32".
    batch_seconds: padded audio per forward pass (default BATCH_SECONDS of the device).
    loader_workers: decoding processes (default: 1 on the CPU; on CUDA this worker's share of the
    cores, at most CUDA_LOADER_WORKERS; 0: decode in this process).
    cpu_threads: torch threads while computing on the CPU (default: torch's).
    """

    def __init__(self, encoder: HubertEncoder, layer: int, device: str = "auto", max_chunk: int = MAX_CHUNK,
                 precision: str = "auto", batch_seconds: float | None = None,
                 loader_workers: int | None = None, cpu_threads: int | None = None):
        if not 1 <= layer <= encoder.config.num_hidden_layers:
            raise ValueError(f"layer must be in 1..{encoder.config.num_hidden_layers}, got {layer}")
        if precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
        self.device = pick_device(device)
        self.encoder = encoder.to(self.device).eval()
        self.layer, self.max_chunk = layer, max_chunk
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        self.batch_samples = round((batch_seconds or BATCH_SECONDS[kind]) * SAMPLE_RATE)
        self.loader_workers = loader_workers if loader_workers is not None else \
            _cuda_loader_workers() if kind == "cuda" else 1
        self.cpu_threads = cpu_threads
        spec = tuple((kernel, stride) for _, kernel, stride in encoder.config.conv_layers)
        self.min_width = receptive_field(spec)  # a batch of short tail chunks still fits the CNN

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        """wav (samples,) float at 16 kHz -> (frames, hidden_size) float32."""
        return self.layers(wav, [self.layer])[self.layer]

    def layers(self, wav: np.ndarray, layers: list[int]) -> dict[int, np.ndarray]:
        """Several layers from one pass: {layer: (frames, hidden_size) float32}."""
        if len(wav) < self.min_width:
            raise ValueError(f"{len(wav)} samples, fewer than the {self.min_width} one model frame needs")
        whole = whole_utterance(torch.as_tensor(np.asarray(wav, dtype=np.float32)), self.encoder.config.normalize)
        wav_rows, lengths = pad_rows(list(whole.split(self.max_chunk)), self.min_width)
        with self._threads():
            return self._forward(wav_rows, lengths, layers).wait()[0]

    def plan(self, manifest: Manifest) -> FeaturePlan:
        return plan_feature_batches(manifest.sizes, self.batch_samples, self.max_chunk)

    def stream(self, manifest: Manifest, lines: range | None = None, reduce: Reduce | None = None
               ) -> Iterator[np.ndarray]:
        """Layer features of manifest `lines` (default: all), in line order: (frames, hidden_size)
        float32 each, or `reduce` of them (applied on the device, e.g. the nearest centroid).

        The batches are those of `plan(manifest)` holding any of `lines`, so a shard's features do not
        depend on how the manifest was sharded. Memory: the finished lines of about one window.
        """
        lines = range(len(manifest)) if lines is None else lines
        done: dict[int, dict[int, np.ndarray]] = {}  # utterance -> {chunk start: features}
        position = 0
        with self._threads():
            for rows, per_row in self._computed(manifest, batches_for(self.plan(manifest), lines), reduce):
                for row, feats in zip(rows, per_row):
                    if row.utterance in lines:
                        done.setdefault(row.utterance, {})[row.start] = feats
                while position < len(lines) and self._complete(manifest, done, lines[position]):
                    chunks = done.pop(lines[position])
                    yield np.concatenate([chunks[start] for start in sorted(chunks)])
                    position += 1

    def _complete(self, manifest: Manifest, done: dict, utterance: int) -> bool:
        return len(done.get(utterance, ())) == -(-manifest.sizes[utterance] // self.max_chunk)

    def _computed(self, manifest: Manifest, batches: FeaturePlan, reduce: Reduce | None
                  ) -> Iterator[tuple[tuple[Row, ...], list[np.ndarray]]]:
        """(rows, features of each row) per batch. The next batch is launched before the last one's
        results are read back, so the GPU works while the host splits and writes."""
        loader = torch.utils.data.DataLoader(
            BatchAudio(manifest, batches, self.max_chunk, self.encoder.config.normalize, self.min_width),
            batch_size=None, num_workers=self.loader_workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if self.loader_workers else None)
        pending = None
        for item in loader:
            if isinstance(item, Exception):
                raise item
            launched = (item.rows, self._forward(item.wav, item.lengths, [self.layer], reduce))
            if pending is not None:
                yield _per_row(*pending, self.layer)
            pending = launched
        if pending is not None:
            yield _per_row(*pending, self.layer)

    def _forward(self, wav: torch.Tensor, lengths: torch.Tensor, layers: list[int],
                 reduce: Reduce | None = None) -> "_Pending":
        """wav (rows, width) and lengths (rows,) on the host -> each layer's valid frames of every row,
        concatenated row after row: {layer: (sum of frames, hidden_size) float32, or reduce of it}."""
        frames = self.encoder.frames(lengths).clamp(min=0)  # (rows,) on the host
        width = int(self.encoder.frames(torch.tensor([wav.shape[1]])))
        valid = (torch.arange(width)[None, :] < frames[:, None]).flatten().nonzero()[:, 0]
        with torch.inference_mode():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.encoder(self._to_device(wav), self._to_device(lengths), normalize=False,
                                   num_layers=max(layers))
            index = self._to_device(valid)
            results = {}
            for layer in layers:
                feats = out.layers[layer - 1].float().flatten(0, 1).index_select(0, index)
                results[layer] = reduce(feats) if reduce is not None else feats
            return _Pending(results, frames)

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        """A host tensor on the model's device without waiting for it: from pinned memory on CUDA
        (the loader's batches come pinned; pinning a small tensor reuses a cached pinned block)."""
        if self.device.type == "cuda" and not host.is_pinned():
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True)

    def _threads(self):
        """torch's CPU threads set to `cpu_threads` while computing on the CPU, then restored."""
        if self.device.type != "cpu" or not self.cpu_threads:
            return contextlib.nullcontext()
        return torch_threads(self.cpu_threads)


def _cuda_loader_workers() -> int:
    """Decoding processes per GPU: this worker's share of the cores (torchrun's LOCAL_WORLD_SIZE
    workers per machine) less one for the model's own process, at most CUDA_LOADER_WORKERS."""
    share = (os.cpu_count() or 2) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(CUDA_LOADER_WORKERS, share - 1))


class _Pending:
    """Results on their way to the host: copied without blocking on CUDA, waited for by `wait`."""

    def __init__(self, results: dict[int, torch.Tensor], frames: torch.Tensor):
        self.frames, self.event = frames, None
        device = next(iter(results.values())).device
        if device.type == "cuda":
            results = {k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True).copy_(v, non_blocking=True)
                       for k, v in results.items()}
            self.event = recorded_event(device)
        self.results = results

    def wait(self) -> tuple[dict[int, np.ndarray], torch.Tensor]:
        """({layer: (sum of frames, ...) array}, (rows,) frames per row)."""
        if self.event is not None:
            self.event.synchronize()
        return {k: v.numpy() for k, v in self.results.items()}, self.frames


def recorded_event(device: torch.device) -> "torch.cuda.Event":
    """A CUDA event recorded on `device`'s current stream, behind the copies queued there. Not the
    current device's stream: a torchrun worker on cuda:N may never call `set_device`, and an event
    on cuda:0 would not wait for cuda:N's copies."""
    event = torch.cuda.Event()
    event.record(torch.cuda.current_stream(device))
    return event


def _per_row(rows: tuple[Row, ...], pending: _Pending, layer: int) -> tuple[tuple[Row, ...], list[np.ndarray]]:
    results, frames = pending.wait()
    return rows, np.split(results[layer], np.cumsum(frames.numpy())[:-1])


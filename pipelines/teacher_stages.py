"""An iteration's teacher: features -> k-means -> labels, each a stage spread over torchrun workers.

MFCC teachers dump every split's features (39 x 100 Hz is small) and label from the dumps; layer
teachers dump only the k-means sample and label straight from the audio (a forward pass to the
layer per batch, nearest centroid on the device), so 768-dim features never fill a disk. The
valid and test splits are labelled with the train split's teacher.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clustering.assign import assign_all, finish_label_dir, label_audio, merge_label_shards, shard_label_path
from clustering.audio import FRAME_RATE, MFCC_FRAMES, MFCC_RATE
from clustering.feature_shards import FeatureShards, sample_utterances
from clustering.features import dump_features, mfcc_features, shard_paths
from clustering.kmeans import KMeansTeacher, fit_kmeans
from clustering.labels import write_labels
from clustering.manifest import read_manifest
from pretrain.typed_settings import DERIVED, OMIT_DEFAULT, RUN_ONLY

from .data_stage import all_jobs
from .layout import WorkLayout
from .scan_stage import chosen_layer
from .spread import record_shards, shard_count, wait_for, worker, worker_device


@dataclass(frozen=True)
class MfccFeatureSettings:
    features: str = "mfcc"
    jobs: int = field(default=0, metadata=RUN_ONLY)  # processes (0: every core, shared among workers)


@dataclass(frozen=True)
class LayerFeatureSettings:
    """Layer `layer` (1-based, or "auto": the it1-scan's choice) of the previous iteration's model or
    of the `teacher_hf` source; only the k-means sample (`percent` of train, drawn with `seed`) is dumped."""

    iteration: int = field(metadata=DERIVED)
    layer: int | str = 6
    percent: float = 0.1
    seed: int = field(default=0, metadata=OMIT_DEFAULT)
    features: str = "layer"
    jobs: int = field(default=0, metadata=RUN_ONLY)  # torch threads on the CPU (0: all)
    device: str = field(default="auto", metadata=RUN_ONLY)


@dataclass(frozen=True)
class KMeansSettings:
    num_units: int
    backend: str
    seed: int
    percent: float  # the fraction of train utterances fitted on
    sample_gib: float  # RAM for the sample (0: no limit)
    float16: bool
    iteration: int = field(default=1, metadata=DERIVED)
    features: str = field(default="mfcc", metadata=DERIVED)
    layer: int | str = field(default=6, metadata=DERIVED)
    device: str = field(default="auto", metadata=RUN_ONLY)


@dataclass(frozen=True)
class LabelSettings:
    iteration: int = field(metadata=DERIVED)
    features: str = field(default="mfcc", metadata=DERIVED)
    layer: int | str = field(default=6, metadata=DERIVED)
    jobs: int = field(default=0, metadata=RUN_ONLY)
    device: str = field(default="auto", metadata=RUN_ONLY)


def teacher_layer(inputs: WorkLayout, layer: int | str) -> int:
    """The layer a teacher takes: its own, or the it1-scan's choice when "auto"."""
    return chosen_layer(inputs.scan(1)) if layer == "auto" else int(layer)


def layer_feature_fn(inputs: WorkLayout, iteration: int, layer: int | str, device: str = "auto", jobs: int = 0):
    """Layer features of the previous iteration's newest readable checkpoint (or of the `teacher_hf`
    source) on `device` ("auto": the GPU when present), in batches; `jobs` torch threads on the CPU."""
    from pretrain.checkpoint import latest_path
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    source = inputs.source("teacher_hf") or latest_path(inputs.checkpoints(iteration - 1))
    if source is None:
        raise FileNotFoundError(f"{inputs.checkpoints(iteration - 1)}: no checkpoint to take layer {layer} from")
    return LayerFeatures(load_encoder(source), teacher_layer(inputs, layer), device=worker_device(device),
                         cpu_threads=jobs or None)


def dump_teacher_features(inputs: WorkLayout, out: Path, settings: MfccFeatureSettings | LayerFeatureSettings
                          ) -> None:
    """This worker's shard of the features; worker 0 waits for every shard and records their number."""
    rank, world = worker()
    if isinstance(settings, MfccFeatureSettings):
        jobs = settings.jobs or max(1, all_jobs(0) // world)  # every core, shared among the workers
        dumps = {split: read_manifest(inputs.manifest(split)) for split in inputs.splits()}
        fn = mfcc_features
    else:
        manifest = read_manifest(inputs.manifest("train"))
        dumps = {"sample": manifest.subset(sample_utterances(len(manifest), settings.percent, settings.seed))}
        jobs, fn = 1, layer_feature_fn(inputs, settings.iteration, settings.layer, settings.device, settings.jobs)
    for split, manifest in dumps.items():
        dump_features(manifest, fn, out, split, rank, world, jobs=jobs)
    if rank == 0:
        wait_for([shard_paths(out, split, r, world)[0] for split in dumps for r in range(world)])
        record_shards(out, world)


def fit_teacher(inputs: WorkLayout, out: Path, settings: KMeansSettings) -> None:
    """Fit on the k-means sample, held in at most `sample_gib` GiB (0: no limit), float16 if asked."""
    features = inputs.features(settings.iteration)
    split, fraction = ("train", settings.percent) if settings.features == "mfcc" else ("sample", 1.0)
    feats = FeatureShards(features, split, shard_count(features)).sample(
        fraction, settings.seed, max_bytes=round(settings.sample_gib * 2**30),
        dtype=np.float16 if settings.float16 else np.float32)
    name = "mfcc" if settings.features == "mfcc" else f"layer{teacher_layer(inputs, settings.layer)}"
    teacher = fit_kmeans(feats, settings.num_units, settings.backend, settings.seed, fraction=settings.percent,
                         features=name, device=settings.device)
    teacher.save(inputs.teacher(settings.iteration))


def label_splits(inputs: WorkLayout, out: Path, settings: LabelSettings) -> None:
    """This worker's shard of every split's labels; worker 0 merges the shards and checks the result.
    The valid (and test) split gets the train split's teacher."""
    rank, world = worker()
    teacher_path = inputs.teacher(settings.iteration)
    teacher = KMeansTeacher.load(teacher_path)
    manifests = {split: read_manifest(inputs.manifest(split)) for split in inputs.splits()}
    if settings.features == "mfcc":
        features = inputs.features(settings.iteration)
        rate, frames = float(MFCC_RATE), MFCC_FRAMES
    else:
        feature_fn = layer_feature_fn(inputs, settings.iteration, settings.layer, settings.device, settings.jobs)
        rate, frames = float(FRAME_RATE), feature_fn.encoder.config.conv_spec
    for split, manifest in manifests.items():
        if settings.features == "mfcc":
            shards, lines = FeatureShards(features, split, shard_count(features)), manifest.shard(rank, world)
            rows = assign_all((shards[i] for i in lines), teacher, len(lines), desc=f"labels {split}")
        else:
            rows = label_audio(manifest, feature_fn, teacher, rank, world)
        write_labels(shard_label_path(out, split, rank, world), rows)
    if rank == 0:
        _merge_labels(out, manifests, world)
        finish_label_dir(out, teacher_path, teacher, rate, settings.features, manifests, frames)


def _merge_labels(out: Path, manifests: dict, world: int) -> None:
    """Wait for every worker's label shards, merge them in rank order, remove the shards."""
    shards = [shard_label_path(out, split, r, world) for split in manifests for r in range(world)]
    wait_for(shards)
    for split, manifest in manifests.items():
        merge_label_shards(out, split, world, manifest)
    for path in shards:
        path.unlink()

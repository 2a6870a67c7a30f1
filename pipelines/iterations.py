"""Iteration 1 and iteration 2 as one sequence of stages, from audio to exports and a report.

Work directory layout (one folder per stage, see README):
  data/          train.tsv, valid.tsv, test.tsv with test_percent (+ SPLIT.phn.tsv for the built-in corpus)
  it1-features/  MFCC shards          it1-kmeans/  teacher.npy/.json    it1-labels/  SPLIT.km, labels.json
  it1-train/     checkpoints/, train_log.jsonl, tb/                      it1-scan/    scan.json (PNMI per layer)
  it2-features/  layer features of the k-means sample only   it2-kmeans/   it2-labels/ (labelled on the fly)
  it2-train/     it2-scan/     export/{encoder,ctc,classification}/     quality/  report.md, quality.json, plots
"""
from __future__ import annotations

import dataclasses
import os
from functools import partial
from pathlib import Path

from clustering.assign import assign_all, finish_label_dir, label_audio, merge_label_shards, shard_label_path
from clustering.audio import FRAME_RATE, MFCC_FRAMES, MFCC_RATE
from clustering.audio_folder import find_audio, scan_audio, write_scan
from clustering.features import dump_features, mfcc_features, shard_paths
from clustering.kmeans import KMeansTeacher, fit_kmeans
from clustering.labels import write_labels
from clustering.manifest import read_manifest, write_manifest
from clustering.feature_shards import FeatureShards, sample_utterances
from clustering.heldout import split_off_test
from clustering.synthetic.corpus import make_corpus

from .run_config import IterationSettings, PipelineConfig
from .fingerprint import content_fingerprint, folder_fingerprint
from .scan_stage import chosen_layer, scan_stage, scans
from .spread import record_shards, shard_count, wait_for, worker, worker_device
from .stages import Stage

SPLITS = ("train", "valid")  # test too when the config sets test_percent (see `splits`)
CORPUS_AUDIO = "wav"  # the built-in corpus keeps its audio in data/wav/


def build_stages(config: PipelineConfig) -> list[Stage]:
    """Every stage of a full run, in order, with the settings that decide each one's output."""
    work = Path(config.work_dir)
    data = work / "data"
    jobs = config.jobs or None
    stages = [_data_stage(config)]
    for number, it in ((1, config.iteration1), (2, config.iteration2)):
        prefix, previous = f"it{number}", f"it{number - 1}-train"
        feature_inputs = ("data",) if it.features == "mfcc" or it.teacher_hf else ("data", previous)
        if it.layer == "auto":
            feature_inputs += (f"it{number - 1}-scan",)
        stages += [
            Stage(f"{prefix}-features", partial(_features, data, work, it, previous, config.seed, jobs,
                                                device=config.device),
                  _feature_settings(it), after=feature_inputs, shared=True),
            Stage(f"{prefix}-kmeans", partial(_kmeans, work, prefix, it, config.seed,
                                              device=config.device, sample_gib=config.kmeans_sample_gib,
                                              float16=config.kmeans_float16),
                  {"num_units": it.num_units, "backend": it.kmeans_backend, "seed": config.seed,
                   "percent": it.kmeans_percent, "sample_gib": config.kmeans_sample_gib,
                   "float16": config.kmeans_float16},
                  after=(f"{prefix}-features",)),
            Stage(f"{prefix}-labels", partial(_labels, data, work, prefix, it, previous, jobs, device=config.device),
                  {}, after=(f"{prefix}-kmeans",) + feature_inputs, shared=True),
            _train_stage(prefix, data, work, it),
        ]
        if scans(config):
            stages.append(Stage(f"{prefix}-scan", partial(scan_stage, config, number), _scan_settings(config),
                                after=("data", f"{prefix}-train")))
    transcripts = transcripts_path(config)
    stages.append(Stage("export", partial(_export, work, transcripts, config.export.labels),
                        {"transcripts": content_fingerprint(config.export.transcripts)
                         or ("built-in corpus" if transcripts else ""),
                         "labels": list(config.export.labels)}, after=("it2-train", "data")))
    from .quality_stage import quality_stage  # the report reads every teacher and model

    stages.append(Stage("quality", partial(quality_stage, config),
                        {"alignments": content_fingerprint(config.alignments),
                         "speakers": [content_fingerprint(config.speakers), config.speaker_folder]},
                        after=("it1-labels", "it2-labels") + (("it1-scan", "it2-scan") if scans(config) else ())))
    return stages


def _scan_settings(config: PipelineConfig) -> dict:
    return {"units": config.scan_units, "checkpoints": config.scan_checkpoints, "seed": config.seed,
            "alignments": content_fingerprint(config.alignments)}


def _data_stage(config: PipelineConfig) -> Stage:
    """Manifests of the user's audio (fingerprinted by content) or of the built-in corpus."""
    test = {"test_percent": config.test_percent} if config.test_percent else {}  # earlier runs' hashes hold
    if config.audio_dir:
        root = Path(config.audio_dir).expanduser().resolve()
        run = partial(_scan, root, config.valid_percent, config.test_percent, config.seed, config.jobs or None)
        return Stage("data", run, {"audio": folder_fingerprint(root, find_audio(root)),
                                   "valid_percent": config.valid_percent, "seed": config.seed, **test},
                     refresh=partial(_reroot, root))
    c = config.corpus
    return Stage("data", partial(_corpus, c.hours, c.languages, c.seed, config.valid_percent, config.test_percent,
                                 all_jobs(config.jobs)),
                 {"corpus": dataclasses.asdict(c), "valid_percent": config.valid_percent, **test},
                 refresh=lambda folder: _reroot(folder / CORPUS_AUDIO, folder))


def _reroot(root: Path, folder: Path) -> None:
    """Point the manifests' first line at `root`, where the audio is now (a moved corpus or
    work folder is not a change of data)."""
    for split in splits(folder):
        path = folder / f"{split}.tsv"
        manifest = read_manifest(path)
        if manifest.root != root:
            write_manifest(path, root, list(zip(manifest.paths, manifest.sizes)))


def splits(data: Path) -> tuple[str, ...]:
    """train, valid, and test when the data stage wrote one (test_percent > 0)."""
    return SPLITS + (("test",) if (data / "test.tsv").exists() else ())


def _scan(audio_dir, valid_percent, test_percent, seed, jobs, folder: Path) -> None:
    heldout = valid_percent + test_percent
    write_scan(scan_audio(audio_dir, valid_percent=heldout, seed=seed, jobs=jobs), audio_dir, folder)
    if test_percent:
        split_off_test(folder, test_percent / heldout, seed)


def all_jobs(jobs: int) -> int:
    """CPU processes for `jobs` (0: every core)."""
    return jobs or os.cpu_count() or 1


def _corpus(hours, languages, seed, valid_percent, test_percent, jobs, folder: Path) -> None:
    """The built-in corpus; its held-out share is at least 5% (PNMI needs held-out phones)."""
    heldout = max(valid_percent + test_percent, 0.05)
    make_corpus(folder, hours, tuple(languages), seed, heldout, jobs=jobs)
    if test_percent:
        split_off_test(folder, test_percent / (valid_percent + test_percent), seed)


def _feature_settings(it: IterationSettings) -> dict:
    if it.features == "mfcc":
        return {"features": "mfcc"}
    teacher = content_fingerprint(it.teacher_hf)  # its content, not its path
    return {"features": "layer", "layer": it.layer, "teacher_hf": teacher, "percent": it.kmeans_percent}


def teacher_layer(work: Path, it: IterationSettings) -> int:
    """The layer an iteration's teacher takes: its own, or the it1-scan's choice when "auto"."""
    return chosen_layer(work) if it.layer == "auto" else it.layer


def layer_feature_fn(work: Path, it: IterationSettings, previous: str, device: str = "auto", jobs=None):
    """Layer features of the previous iteration's model (or a Hugging Face teacher) on `device`
    ("auto": the GPU when present), in batches; `jobs` torch threads on the CPU (None: all)."""
    from pretrain.checkpoint import latest_path
    from pretrain.layer_features import LayerFeatures
    from pretrain.model_io import load_encoder

    source = it.teacher_hf or latest_path(work / previous / "checkpoints")
    if source is None:
        raise FileNotFoundError(f"{work / previous}: no checkpoint to take layer {it.layer} from")
    return LayerFeatures(load_encoder(source), teacher_layer(work, it), device=device, cpu_threads=jobs)


def _features(data: Path, work: Path, it: IterationSettings, previous: str, seed: int, jobs, folder: Path,
              *, device: str = "auto") -> None:
    """This worker's shard of the features; worker 0 waits for every shard and records their number."""
    rank, world = worker()
    if it.features == "mfcc":  # 39 x 100 Hz is small: dump every split, label from the dump
        jobs_ = jobs or max(1, all_jobs(0) // world)  # every core, shared among the workers
        dumps = {split: read_manifest(data / f"{split}.tsv") for split in splits(data)}
        fn = mfcc_features
    else:  # layer features: only the k-means sample is written; labels are assigned on the fly
        manifest = read_manifest(data / "train.tsv")
        dumps = {"sample": manifest.subset(sample_utterances(len(manifest), it.kmeans_percent, seed))}
        jobs_, fn = 1, layer_feature_fn(work, it, previous, worker_device(device), jobs)
    for split, manifest in dumps.items():
        dump_features(manifest, fn, folder, split, rank, world, jobs=jobs_)
    if rank == 0:
        wait_for([shard_paths(folder, split, r, world)[0] for split in dumps for r in range(world)])
        record_shards(folder, world)


def _kmeans(work: Path, prefix: str, it: IterationSettings, seed: int, folder: Path, *, device: str = "auto",
            sample_gib: float = 0.0, float16: bool = False) -> None:
    """Fit on the k-means sample, held in at most `sample_gib` GiB (0: no limit), float16 if asked."""
    import numpy as np

    feature_dir = work / f"{prefix}-features"
    split, fraction = ("train", it.kmeans_percent) if it.features == "mfcc" else ("sample", 1.0)
    feats = FeatureShards(feature_dir, split, shard_count(feature_dir)).sample(
        fraction, seed, max_bytes=round(sample_gib * 2**30), dtype=np.float16 if float16 else np.float32)
    teacher = fit_kmeans(feats, it.num_units, it.kmeans_backend, seed, fraction=it.kmeans_percent,
                         features=f"{it.features}{teacher_layer(work, it) if it.features == 'layer' else ''}",
                         device=device)
    teacher.save(folder / "teacher.npy")


def _labels(data: Path, work: Path, prefix: str, it: IterationSettings, previous: str, jobs, folder: Path,
            *, device: str = "auto") -> None:
    """This worker's shard of every split's labels; worker 0 merges the shards and checks the result.
    The valid split gets the training split's teacher."""
    rank, world = worker()
    teacher_path = work / f"{prefix}-kmeans" / "teacher.npy"
    teacher = KMeansTeacher.load(teacher_path)
    manifests = {split: read_manifest(data / f"{split}.tsv") for split in splits(data)}
    if it.features == "mfcc":
        feature_dir = work / f"{prefix}-features"
        rate, frames = float(MFCC_RATE), MFCC_FRAMES
    else:
        feature_fn = layer_feature_fn(work, it, previous, worker_device(device), jobs)
        rate, frames = float(FRAME_RATE), feature_fn.encoder.config.conv_spec
    for split, manifest in manifests.items():
        if it.features == "mfcc":
            shards, lines = FeatureShards(feature_dir, split, shard_count(feature_dir)), manifest.shard(rank, world)
            rows = assign_all((shards[i] for i in lines), teacher, len(lines), desc=f"labels {split}")
        else:
            rows = label_audio(manifest, feature_fn, teacher, rank, world)
        write_labels(shard_label_path(folder, split, rank, world), rows)
    if rank == 0:
        _merge_labels(folder, manifests, world)
        finish_label_dir(folder, teacher_path, teacher, rate, _feature_settings(it)["features"], manifests, frames)


def _merge_labels(folder: Path, manifests: dict, world: int) -> None:
    """Wait for every worker's label shards, merge them in rank order, remove the shards."""
    shards = [shard_label_path(folder, split, r, world) for split in manifests for r in range(world)]
    wait_for(shards)
    for split, manifest in manifests.items():
        merge_label_shards(folder, split, world, manifest)
    for path in shards:
        path.unlink()


def _train_stage(prefix: str, data: Path, work: Path, it: IterationSettings) -> Stage:
    """Pretraining, fingerprinted by every resolved setting that decides the weights (defaults
    included), not by those that only decide how it runs; `max_updates` is its budget."""
    from pretrain.model_config import mask_from_settings, model_from_settings
    from pretrain.train_config import apply_overrides, train_preset

    model, mask = model_from_settings(it.model, it.model_settings), mask_from_settings(it.mask)
    config = apply_overrides(train_preset(it.model), it.train)
    settings = {"model": dataclasses.asdict(model), "mask": dataclasses.asdict(mask),
                "train": config.result_settings()}
    return Stage(f"{prefix}-train", partial(_train, data, work / f"{prefix}-labels", model, mask, config),
                 settings, after=("data", f"{prefix}-labels"), resumable=True,
                 budget={"max_updates": config.max_updates})


def _train(data: Path, label_dir: Path, model, mask, config, folder: Path) -> None:
    from pretrain.trainer import train

    train(data, [label_dir], folder, model, config, mask_config=mask)


def transcripts_path(config: PipelineConfig) -> Path | None:
    """The transcripts a CTC export takes its characters from: the config's, or the built-in corpus's."""
    if config.export.transcripts:
        return Path(config.export.transcripts).expanduser()
    return None if config.audio_dir else Path(config.work_dir) / "data" / "transcripts.tsv"


def _export(work: Path, transcripts: Path | None, labels: tuple[str, ...], folder: Path) -> None:
    """export/encoder always; export/ctc with the transcripts' characters; export/classification
    with the user's class names. No vocabulary or label set is invented."""
    from pretrain.checkpoint import latest_path
    from pretrain.hf import export_hf
    from pretrain.model_io import load_encoder
    from pretrain.vocabulary import transcript_characters

    encoder = load_encoder(latest_path(work / "it2-train" / "checkpoints"))
    export_hf(encoder, folder / "encoder", "none")
    if transcripts is not None:
        export_hf(encoder, folder / "ctc", "ctc", vocab_tokens=transcript_characters(transcripts))
    if labels:
        export_hf(encoder, folder / "classification", "classification", labels=list(labels))

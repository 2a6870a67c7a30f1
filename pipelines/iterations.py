"""Iteration 1 and iteration 2 as one list of stage declarations, from audio to exports and a report.

Each declaration names its settings (resolved once, when the config was read), the stages whose
outputs it reads and the user paths it reads; the engine (stages.py) derives the hashes and the
order from them, and each stage opens only what it declares (see layout.py).
"""
from __future__ import annotations

from pathlib import Path

from clustering.audio_folder import find_audio

from .data_stage import AudioData, CorpusData, follow_corpus, follow_user_audio, make_corpus_data, scan_user_audio
from .declaration import Source, Stage, content_source
from .export_stage import ExportSettings, export_models
from .fingerprint import folder_fingerprint
from .layout import WorkLayout
from .quality_stage import QualitySettings, write_quality
from .run_config import IterationSettings, PipelineConfig
from .scan_stage import ScanSettings, scan_layers, scans
from .teacher_stages import (KMeansSettings, LabelSettings, LayerFeatureSettings, MfccFeatureSettings,
                             dump_teacher_features, fit_teacher, label_splits)
from .train_stage import TrainSettings, pretrain


def build_stages(config: PipelineConfig) -> list[Stage]:
    """Every stage of a full run, in order."""
    stages = [data_stage(config)]
    for number, it in ((1, config.iteration1), (2, config.iteration2)):
        stages += iteration_stages(config, number, it)
    built_in = not config.audio_dir and not config.export.transcripts
    transcripts = Source(None, lambda: "built-in corpus") if built_in else content_source(config.export.transcripts)
    return stages + [
        Stage("export", export_models, ExportSettings(config.export.labels, built_in), reads=("it2-train", "data"),
              sources={"transcripts": transcripts}, keep=True),
        quality_stage(config)]


def quality_stage(config: PipelineConfig) -> Stage:
    """Both teachers' reports, and every row (the iteration-1 teacher's features, each model at its
    layer chosen on valid) measured with the scans' budget."""
    scanned = ("it1-scan", "it2-scan") if scans(config) else ()
    models = ("it1-train", "it2-train") if scanned else ()
    one = config.iteration1
    teacher_layer = int(one.layer) if one.features == "layer" else 0
    settings = QualitySettings(config.scan_units, config.seed, config.speaker_folder, teacher_layer,
                               bool(scanned), config.device)
    sources = {"alignments": content_source(config.alignments), "speakers": content_source(config.speakers),
               "teacher_hf": content_source(one.teacher_hf if teacher_layer else "")}
    return Stage("quality", write_quality, settings, reads=("data", "it1-labels", "it2-labels", *scanned, *models),
                 sources=sources)


def data_stage(config: PipelineConfig) -> Stage:
    """Manifests of the user's audio (counted by content) or of the built-in corpus."""
    if config.audio_dir:
        root, cache = Path(config.audio_dir).resolve(), WorkLayout(Path(config.work_dir)).fingerprint_cache
        audio = Source(root, lambda: folder_fingerprint(root, find_audio(root), cache))
        return Stage("data", scan_user_audio, AudioData(config.valid_percent, config.seed, config.test_percent,
                                                        config.jobs),
                     sources={"audio": audio, "alignments": content_source(config.alignments, hashed=False)},
                     refresh=follow_user_audio)
    return Stage("data", make_corpus_data,
                 CorpusData(config.corpus, config.valid_percent, config.test_percent, config.jobs),
                 refresh=follow_corpus)


def iteration_stages(config: PipelineConfig, number: int, it: IterationSettings) -> list[Stage]:
    """features -> k-means -> labels -> training (-> layer scan) of one iteration."""
    name = f"it{number}"
    mfcc = it.features == "mfcc"
    teacher = () if mfcc or it.teacher_hf else (f"it{number - 1}-train",)
    auto = ("it1-scan",) if it.layer == "auto" else ()
    teacher_hf = {} if mfcc else {"teacher_hf": content_source(it.teacher_hf)}
    features = MfccFeatureSettings(jobs=config.jobs) if mfcc else LayerFeatureSettings(
        number, it.layer, it.kmeans_percent, config.seed, jobs=config.jobs, device=config.device)
    stages = [
        Stage(f"{name}-features", dump_teacher_features, features, reads=("data", *teacher, *auto),
              sources=teacher_hf, shared=True),
        Stage(f"{name}-kmeans", fit_teacher, KMeansSettings(
            it.num_units, it.kmeans_backend, config.seed, it.kmeans_percent, config.kmeans_sample_gib,
            config.kmeans_float16, number, it.features, it.layer, config.device),
              reads=(f"{name}-features", *auto), hash_reads=(f"{name}-features",)),
        Stage(f"{name}-labels", label_splits, LabelSettings(number, it.features, it.layer, config.jobs, config.device),
              reads=(f"{name}-kmeans", "data", *teacher, *auto, *((f"{name}-features",) if mfcc else ())),
              hash_reads=(f"{name}-kmeans", "data", *teacher, *auto),
              sources={} if mfcc else {"teacher_hf": content_source(it.teacher_hf, hashed=False)}, shared=True),
        Stage(f"{name}-train", pretrain, TrainSettings(number, it.model_config, it.mask_config, it.train_config),
              reads=("data", f"{name}-labels"), resumable=True),
    ]
    if scans(config):
        stages.append(Stage(f"{name}-scan", scan_layers, ScanSettings(
            number, config.scan_units, config.scan_checkpoints, config.seed, config.device),
                            reads=("data", f"{name}-train"), sources={"alignments": content_source(config.alignments)}))
    return stages

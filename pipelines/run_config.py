"""The pipeline's settings: one dataclass per section, defaults only here.

Config files are TOML whose sections mirror these dataclasses; `key=value`
overrides on the command line use dotted names (`iteration1.num_units=50`).
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.train_config import PRESETS
from pretrain.typed_settings import SettingError, at_least, fraction, from_dict, one_of, positive


@dataclass
class CorpusSettings:
    """The built-in synthetic corpus, used when `audio_dir` is empty."""

    hours: float = 0.5
    languages: tuple[str, ...] = ("en", "de", "fr")
    seed: int = 0

    def __post_init__(self):
        positive(self, "hours")
        if not self.languages:
            raise SettingError("languages: name at least one language, e.g. en,de,fr")


@dataclass
class IterationSettings:
    """One HuBERT iteration: a teacher (features -> k-means -> labels), then pretraining.

    `features` is "mfcc" (iteration 1) or "layer" (the previous model's layer
    `layer`, 1-based; or an existing Hugging Face HuBERT directory `teacher_hf`).
    Iteration 2's `layer` may be "auto": the layer of the iteration-1 model whose
    k-means units score the highest PNMI on the valid split (the it1-scan stage).
    `model_settings`, `mask` and `train` hold overrides of the preset's ModelConfig,
    of MaskConfig and of the trainer's TrainConfig (e.g. max_updates).
    """

    features: str = "mfcc"
    layer: int | str = 6  # 1-based; "auto" (iteration 2): the layer the it1-scan stage picks on valid
    teacher_hf: str = ""
    num_units: int = 100
    kmeans_percent: float = 0.1  # fraction of training utterances the k-means is fitted on
    kmeans_backend: str = "auto"  # faiss on the CPU, torch on a GPU; or faiss, torch, sklearn
    model: str = "base"
    model_settings: dict = field(default_factory=dict)  # overrides of the preset, e.g. {layerdrop = 0.0}
    mask: dict = field(default_factory=dict)  # overrides of the paper's masking, e.g. {mask_prob = 0.65}
    train: dict = field(default_factory=dict)

    def __post_init__(self):
        one_of(self, "features", FEATURES)
        one_of(self, "kmeans_backend", KMEANS_BACKENDS)
        one_of(self, "model", PRESETS)
        if isinstance(self.layer, str) and self.layer != "auto":
            raise SettingError(f"layer: expected a layer number (1-based) or \"auto\", got {self.layer!r}")
        if isinstance(self.layer, int):
            at_least(self, "layer", 1)
        at_least(self, "num_units", 2)
        fraction(self, "kmeans_percent")


@dataclass
class ExportSettings:
    """What `hubert run` exports besides the encoder (always exported): heads fit for the language."""

    transcripts: str = ""  # uid<TAB>text: a CTC head over their characters (the built-in corpus has its own)
    labels: tuple[str, ...] = ()  # class names: a sequence-classification head with these labels

    def __post_init__(self):
        if self.labels and (len(self.labels) < 2 or len(set(self.labels)) != len(self.labels)):
            raise SettingError(f"labels: need two or more distinct class names, got {list(self.labels)}")


@dataclass
class PipelineConfig:
    """Everything `hubert run` needs; see `hubert configs` (pipelines/configs/*.toml) for annotated examples."""

    work_dir: str = "work"
    audio_dir: str = ""  # folder of audio; empty means: synthesise the built-in corpus
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    valid_percent: float = 0.01
    test_percent: float = 0.0  # a second held-out split, data/test.tsv: layers are chosen on valid, reported on test
    seed: int = 0
    alignments: str = ""  # fairseq frame-level phone alignments (tsv at 100 Hz) for PNMI, optional
    speakers: str = ""  # uid<TAB>speaker file for ABX within/across speaker (the built-in corpus has its own)
    speaker_folder: int = 0  # or: the N-th folder of each audio path names its speaker (LibriSpeech: 1)
    jobs: int = 0  # CPU processes for features and labels; 0 = all cores
    iteration1: IterationSettings = field(default_factory=IterationSettings)
    iteration2: IterationSettings = field(
        default_factory=lambda: IterationSettings(features="layer", layer=6, num_units=500))
    export: ExportSettings = field(default_factory=ExportSettings)
    scan_layers: bool = True  # PNMI of every layer of both models (it1-scan, it2-scan), with alignments
    scan_checkpoints: bool = False  # scan every kept checkpoint, not only the newest (PNMI over training)
    scan_units: int = 100  # k-means units per layer in the scans (the paper's Figure 2: 100, 500, 1000)
    device: str = "auto"  # layer features, labels, layer scans and torch k-means: auto = the GPU when present
    kmeans_sample_gib: float = 0.0  # RAM for a k-means sample; frames beyond it are subsampled; 0 = no limit
    kmeans_float16: bool = False  # hold the k-means sample as float16 (half the RAM)

    def __post_init__(self):
        fraction(self, "valid_percent", zero_ok=True)
        fraction(self, "test_percent", zero_ok=True)
        if self.valid_percent + self.test_percent >= 1:
            raise SettingError(f"test_percent: valid_percent + test_percent must stay below 1 (train needs "
                               f"utterances), got {self.valid_percent:g} + {self.test_percent:g}")
        at_least(self, "jobs", 0)
        one_of(self, "device", DEVICES)
        at_least(self, "kmeans_sample_gib", 0)
        at_least(self, "scan_units", 2)
        at_least(self, "speaker_folder", 0)


FEATURES = ("mfcc", "layer")
KMEANS_BACKENDS = ("faiss", "sklearn", "torch", "auto")  # auto: torch on a GPU, faiss on the CPU
DEVICES = ("auto", "cpu", "cuda")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> PipelineConfig:
    """Read a config (a TOML file, a shipped config's name such as "paper-base", or the defaults
    when `path` is None), apply `key=value` overrides, and check the whole of it (types, ranges,
    presets, layers) before anything runs."""
    from pipelines.shipped import config_path

    data: dict = {}
    if path is not None:
        path = config_path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(f"{path}: config not found (`hubert configs` lists the shipped ones)") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value, e.g. iteration1.num_units=50")
        _set_dotted(data, key.strip(), parse_value(value.strip()))
    config = from_dict(PipelineConfig, data, "")
    check_config(config)
    return config


def parse_value(text: str):
    """TOML value syntax (numbers, true/false, [lists], "strings"); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(data: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for depth, part in enumerate(parents):
        data = data.setdefault(part, {})
        if not isinstance(data, dict):
            raise SettingError(f"{'.'.join(parents[:depth + 1])}: is a single value, not a table; "
                               f"cannot set {key}")
    data[leaf] = value


def check_config(config: PipelineConfig) -> None:
    """Checks that span sections: training overrides, the teacher layer, paths and the work folder."""
    from pretrain.model_config import mask_from_settings, model_from_settings
    from pretrain.train_config import apply_overrides, train_preset

    for name in ("iteration1", "iteration2"):
        it = getattr(config, name)
        model_from_settings(it.model, it.model_settings, f"{name}.model_settings")
        mask_from_settings(it.mask, f"{name}.mask")
        apply_overrides(train_preset(it.model), it.train, f"{name}.train")
        if it.teacher_hf:
            _existing_folder(f"{name}.teacher_hf", it.teacher_hf)
    if config.iteration1.features == "layer" and not config.iteration1.teacher_hf:
        raise SettingError("iteration1.features: 'layer' needs iteration1.teacher_hf (a Hugging Face HuBERT "
                           "folder); iteration 1 has no earlier model, so use 'mfcc'")
    two = config.iteration2
    _check_auto_layer(config)
    if two.features == "layer" and two.layer != "auto":
        one = config.iteration1
        depth = _teacher_depth(two.teacher_hf) if two.teacher_hf else \
            model_from_settings(one.model, one.model_settings).num_hidden_layers
        if two.layer > depth:
            raise SettingError(f"iteration2.layer: {two.layer} is deeper than the teacher's {depth} layers; "
                               f"choose 1..{depth}")
    _check_paths(config)


def _check_auto_layer(config: PipelineConfig) -> None:
    """layer = "auto" needs an iteration-1 model to scan and phone alignments to score it with."""
    if config.iteration1.layer == "auto":
        raise SettingError("iteration1.layer: \"auto\" picks a layer of the iteration-1 model, so only "
                           "iteration2.layer may be \"auto\"; give iteration 1 a layer number")
    two = config.iteration2
    if two.layer != "auto":
        return
    if two.teacher_hf or two.features != "layer":
        raise SettingError("iteration2.layer: \"auto\" scans the iteration-1 model's layers; it does not "
                           "apply to a teacher_hf teacher or to MFCC features: give a layer number")
    if config.audio_dir and not config.alignments:
        raise SettingError("iteration2.layer: \"auto\" chooses the layer by PNMI against phone alignments; "
                           "set alignments (a frame-level tsv or a folder of TextGrids) or give a layer number")
    if config.audio_dir and not config.valid_percent:
        raise SettingError("iteration2.layer: \"auto\" chooses the layer on the valid split; set valid_percent "
                           "above 0 or give a layer number")


def _teacher_depth(folder: str) -> int:
    import json

    path = Path(folder) / "config.json"
    try:
        return int(json.loads(path.read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError):
        raise SettingError(f"iteration2.teacher_hf: {path} is missing or has no num_hidden_layers; "
                           "give a folder saved by transformers' save_pretrained") from None


def _existing_folder(key: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SettingError(f"{key}: {path} {'is a file, not a folder' if path.exists() else 'does not exist'}")
    return path


def _check_paths(config: PipelineConfig) -> None:
    """Inputs must exist, and must not lie inside WORK_DIR: a rerun may rewrite our stage folders."""
    work = Path(config.work_dir).expanduser().resolve()
    if work.exists() and not work.is_dir():
        raise SettingError(f"work_dir: {work} is a file; give a folder")
    inputs = {}
    if config.audio_dir:
        inputs["audio_dir"] = _existing_folder("audio_dir", config.audio_dir)
    for key, value in (("alignments", config.alignments), ("export.transcripts", config.export.transcripts),
                       ("speakers", config.speakers)):
        path = Path(value).expanduser()
        if value and not path.exists():
            raise SettingError(f"{key}: {path} does not exist")
        if value:
            inputs[key] = path
    for key, path in inputs.items():
        path = path.resolve()
        if path == work or work in path.parents:
            raise SettingError(f"{key}: {path} lies inside work_dir {work}; stages rewrite their folders "
                               "there, so keep your audio and alignments outside it (move them, or choose "
                               "another work_dir)")


def config_dict(config) -> dict:
    """Plain-dict form for hashing and for writing next to the run."""
    return dataclasses.asdict(config)


DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.toml"


def demo_config(overrides: list[str] = ()) -> PipelineConfig:
    """The shipped demo config (pipelines/configs/demo.toml, package data: found from any folder)."""
    return load_config(DEMO_CONFIG, overrides)

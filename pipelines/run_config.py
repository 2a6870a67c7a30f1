"""The pipeline's settings: one dataclass per section, defaults only here.

Config files are TOML whose sections mirror these dataclasses; `key=value`
overrides on the command line use dotted names (`iteration1.num_units=50`).
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from clustering.ownership import contains
from clustering.synthetic.corpus import hours_problem
from clustering.text_files import read_text
from pretrain.model_config import MaskConfig, ModelConfig, mask_from_settings
from pretrain.presets import PRESETS, model_from_settings, train_preset
from pretrain.train_config import TrainConfig, apply_overrides
from pretrain.typed_settings import SettingError, at_least, fraction, from_dict, one_of, positive


@dataclass
class CorpusSettings:
    """The built-in synthetic corpus, used when `audio_dir` is empty."""

    hours: float = 0.5
    languages: tuple[str, ...] = ("en", "de", "fr")
    seed: int = 0

    def __post_init__(self):
        positive(self, "hours")
        if hours_problem(self.hours):
            raise SettingError(f"hours: {hours_problem(self.hours)}")
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
    of MaskConfig and of the trainer's TrainConfig (e.g. max_updates); they are resolved once,
    here, into `model_config`, `mask_config` and `train_config`, which every stage uses.
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
    model_config: ModelConfig = field(init=False)
    mask_config: MaskConfig = field(init=False)
    train_config: TrainConfig = field(init=False)

    def __post_init__(self):
        self.teacher_hf = expand_path(self.teacher_hf)
        one_of(self, "features", FEATURES)
        one_of(self, "kmeans_backend", KMEANS_BACKENDS)
        one_of(self, "model", PRESETS)
        self.model_config = model_from_settings(self.model, self.model_settings, "model_settings")
        self.mask_config = mask_from_settings(self.mask, "mask")
        self.train_config = apply_overrides(train_preset(self.model), self.train, "train")
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
        self.transcripts = expand_path(self.transcripts)
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
        self.work_dir, self.audio_dir, self.alignments, self.speakers = map(expand_path, (
            self.work_dir, self.audio_dir, self.alignments, self.speakers))
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


def expand_path(value: str) -> str:
    """A path setting as it is used: `~` expanded ("" stays ""), so checks and stages see one path."""
    return str(Path(value).expanduser()) if value else value


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
            data = tomllib.loads(read_text(path))
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(f"{path}: config not found (`hubert configs` lists the shipped ones)") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML ({error}); fix it there: `key = value` lines under "
                             "[section] headers, text in quotes (`hubert configs` shows examples)") from None
    apply_overrides_to(data, overrides)
    config = from_dict(PipelineConfig, data, "")
    check_config(config)
    return config


def apply_overrides_to(data: dict, overrides: list[str], bare: str = "", example: str = "iteration1.num_units=50"
                       ) -> dict:
    """Set each `key=value` of `overrides` in the nested table `data` (dotted keys: `iteration1.train.lr`;
    a key without a dot goes into section `bare` when one is given). The one override syntax of
    `hubert run` and `hubert train`; the dataclass the table becomes names unknown keys."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value, e.g. {example}")
        key = key.strip()
        _set_dotted(data, f"{bare}.{key}" if bare and "." not in key else key, parse_value(value.strip()))
    return data


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
    for name in ("iteration1", "iteration2"):
        it = getattr(config, name)
        if it.teacher_hf:
            _check_teacher_hf(f"{name}.teacher_hf", it.teacher_hf)
    if config.iteration1.features == "layer" and not config.iteration1.teacher_hf:
        raise SettingError("iteration1.features: 'layer' needs iteration1.teacher_hf (a Hugging Face HuBERT "
                           "folder); iteration 1 has no earlier model, so use 'mfcc'")
    two = config.iteration2
    _check_auto_layer(config)
    if two.features == "layer" and two.layer != "auto":
        one = config.iteration1
        depth = _teacher_depth(two.teacher_hf) if two.teacher_hf else one.model_config.num_hidden_layers
        if two.layer > depth:
            raise SettingError(f"iteration2.layer: {two.layer} is deeper than the teacher's {depth} layers; "
                               f"choose 1..{depth}")
    _check_paths(config)
    _check_runnable(config)


def _check_runnable(config: PipelineConfig) -> None:
    """Each iteration's crop and minimum length give a frame of its model; a CUDA device is there."""
    from pretrain.train_config import check_device, check_runnable

    check_device(config.device, "device")
    for name in ("iteration1", "iteration2"):
        it = getattr(config, name)
        check_runnable(it.train_config, it.model_config.conv_spec, f"{name}.train.")


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
    path = Path(folder) / "config.json"
    try:
        return int(json.loads(path.read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError):
        raise SettingError(f"iteration2.teacher_hf: {path} is missing or has no num_hidden_layers; "
                           "give a folder saved by transformers' save_pretrained") from None


def _check_teacher_hf(key: str, folder: str) -> None:
    """A Hugging Face teacher must load before the first stage, not after hours of iteration 1:
    config.json with an encoder we build, and its weights."""
    from pretrain.hf import hf_architecture

    path = _existing_folder(key, folder)
    config = path / "config.json"
    try:
        hf_architecture(json.loads(config.read_text(encoding="utf-8")), str(config))
    except (OSError, ValueError) as error:
        reason = "missing" if isinstance(error, FileNotFoundError) else str(error).removeprefix(f"{config}: ")
        raise SettingError(f"{key}: {config}: {reason}; give a folder saved by transformers' save_pretrained") \
            from None
    if not any((path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise SettingError(f"{key}: {path} has no model.safetensors or pytorch_model.bin (weights); give a "
                           "folder saved by transformers' save_pretrained")


def _existing_folder(key: str, value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SettingError(f"{key}: {path} {'is a file, not a folder' if path.exists() else 'does not exist'}")
    return path


def _check_paths(config: PipelineConfig) -> None:
    """Inputs must exist; they and WORK_DIR may not contain each other: stages rewrite their folders."""
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
    for name in ("iteration1", "iteration2"):
        if getattr(config, name).teacher_hf:
            inputs[f"{name}.teacher_hf"] = Path(getattr(config, name).teacher_hf)
    for key, path in inputs.items():
        path = path.resolve()
        if contains(work, path):
            raise SettingError(f"{key}: {path} lies inside work_dir {work}; stages rewrite their folders "
                               "there, so keep your audio and alignments outside it (move them, or choose "
                               "another work_dir)")
        if path.is_dir() and contains(path, work):
            raise SettingError(f"work_dir: {work} lies inside {key} {path}; stages write and remove folders "
                               f"there, so keep the work folder outside your inputs (choose another work_dir)")


DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.toml"


def demo_config(overrides: list[str] = ()) -> PipelineConfig:
    """The shipped demo config (pipelines/configs/demo.toml, package data: found from any folder)."""
    return load_config(DEMO_CONFIG, overrides)

"""The pipeline's settings: one dataclass per section, defaults only here.

Config files are TOML whose sections mirror these dataclasses; `key=value`
overrides on the command line use dotted names (`iteration1.num_units=50`).
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CorpusSettings:
    """The built-in synthetic corpus, used when `audio_dir` is empty."""

    hours: float = 0.5
    languages: tuple[str, ...] = ("en", "de", "fr")
    seed: int = 0


@dataclass
class IterationSettings:
    """One HuBERT iteration: a teacher (features -> k-means -> labels), then pretraining.

    `features` is "mfcc" (iteration 1) or "layer" (the previous model's layer
    `layer`, 1-based; or an existing Hugging Face HuBERT directory `teacher_hf`).
    `train` holds overrides of the trainer's TrainConfig (e.g. max_updates).
    """

    features: str = "mfcc"
    layer: int = 6
    teacher_hf: str = ""
    num_units: int = 100
    kmeans_percent: float = 0.1  # fraction of training utterances the k-means is fitted on
    kmeans_backend: str = "faiss"
    model: str = "base"
    train: dict = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """Everything `hubert run` needs; see configs/*.toml for annotated examples."""

    work_dir: str = "work"
    audio_dir: str = ""  # folder of audio; empty means: synthesise the built-in corpus
    corpus: CorpusSettings = field(default_factory=CorpusSettings)
    valid_percent: float = 0.01
    seed: int = 0
    alignments: str = ""  # fairseq frame-level phone alignments (tsv at 100 Hz) for PNMI, optional
    jobs: int = 0  # CPU processes for features and labels; 0 = all cores
    iteration1: IterationSettings = field(default_factory=IterationSettings)
    iteration2: IterationSettings = field(
        default_factory=lambda: IterationSettings(features="layer", layer=6, num_units=500))
    export_heads: tuple[str, ...] = ("none", "ctc", "classification")
    scan_layers: bool = True  # layer scan of the iteration-1 model in the quality report
    scan_checkpoints: bool = False  # also scan every kept iteration-1 checkpoint (PNMI over training)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> PipelineConfig:
    """Read a TOML config (or the defaults when `path` is None) and apply `key=value` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: config not found (see configs/ for examples)") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like key=value, e.g. iteration1.num_units=50")
        _set_dotted(data, key.strip(), parse_value(value.strip()))
    return _build(PipelineConfig, data, "config")


def parse_value(text: str):
    """TOML value syntax (numbers, true/false, [lists], "strings"); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(data: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def _build(cls, data: dict, where: str):
    """Instantiate dataclass `cls` from `data`, rejecting unknown keys by name."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; known: {sorted(fields)}")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            values[name] = tuple(value.split(",") if isinstance(value, str) else value)
        else:
            values[name] = value
    return cls(**values)


def config_dict(config) -> dict:
    """Plain-dict form for hashing and for writing next to the run."""
    return dataclasses.asdict(config)


DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.toml"


def demo_config(overrides: list[str] = ()) -> PipelineConfig:
    """configs/demo.toml of the source tree (the Makefile installs the toolkit in place)."""
    return load_config(DEMO_CONFIG, overrides)

"""Read a model back from a training checkpoint or a Hugging Face directory.

A checkpoint is a dict saved by `torch.save` and read with `weights_only=True`;
the keys this module relies on are MODEL_KEYS (the trainer adds its own).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .checkpoint import unreadable
from .model_config import MaskConfig, ModelConfig
from .model import HubertEncoder, HubertPretrain

MODEL_KEYS = ("model_config", "mask_config", "num_units", "model")


def model_state(model: HubertPretrain) -> dict:
    """The part of a checkpoint that rebuilds the model."""
    return {"model_config": dataclasses.asdict(model.config),
            "mask_config": dataclasses.asdict(model.mask_config),
            "num_units": list(model.num_units), "model": model.state_dict()}


def model_from_state(state: dict) -> HubertPretrain:
    model = HubertPretrain(ModelConfig(**state["model_config"]), state["num_units"],
                           MaskConfig(**state["mask_config"]))
    model.load_state_dict(state["model"])
    return model


def load_pretrain_model(path: str | Path) -> HubertPretrain:
    """A HubertPretrain from a checkpoint file; a Hugging Face directory gives one with no heads."""
    path = Path(path)
    if path.is_dir():
        from .hf import import_hf

        encoder = import_hf(path)
        model = HubertPretrain(encoder.config, [])
        model.encoder = encoder
        return model
    state = read_checkpoint(path)
    missing = [k for k in MODEL_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing}; was it written by `hubert train`?")
    return model_from_state(state)


NOT_A_MODEL = ("not a checkpoint written by `hubert train` nor a Hugging Face folder; give a training folder's "
               "checkpoints/update_*.pt or best.pt, or a folder written by `hubert export`")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def read_checkpoint(path: Path) -> dict:
    """The dict a checkpoint file holds, read with weights_only; one line for any other file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; give a checkpoint .pt or a Hugging Face folder")
    with open(path, "rb") as f:
        if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ValueError(f"{path}: {NOT_A_MODEL}")
    problem = unreadable(path)
    if problem:
        raise ValueError(f"{path}: a damaged or truncated checkpoint ({problem}); use an earlier one of its folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a zip of other objects (torch's text then spans many lines)
        lines = str(error).strip().splitlines()
        raise ValueError(f"{path}: {NOT_A_MODEL}" + (f" ({lines[0]})" if len(lines) == 1 else "")) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, {NOT_A_MODEL}")
    return state


def load_encoder(path: str | Path) -> HubertEncoder:
    return load_pretrain_model(path).encoder

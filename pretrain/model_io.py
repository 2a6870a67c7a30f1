"""Read a model back from a training checkpoint or a Hugging Face directory.

A checkpoint is a dict saved by `torch.save` and read with `weights_only=True`;
the keys this module relies on are MODEL_KEYS (the trainer adds its own).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable checkpoint ({error})") from None
    missing = [k for k in MODEL_KEYS if k not in state]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing}; was it written by `hubert train`?")
    return model_from_state(state)


def load_encoder(path: str | Path) -> HubertEncoder:
    return load_pretrain_model(path).encoder

"""The presets, in one table: each names a model and the training schedule sized for it.

`tiny` (tests, the demo), `small` (6 x 256, CPU experiments), and the paper's `base`, `large` and
`xlarge`. A preset is the starting point; configs and `key=value` overrides change its fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .model_config import ModelConfig
from .train_config import TrainConfig
from .typed_settings import SettingError, from_dict


@dataclass(frozen=True)
class Preset:
    model: ModelConfig
    train: TrainConfig


def _large(hidden: int, layers: int, heads: int, ffn: int) -> ModelConfig:
    """LARGE / X-LARGE: layer-norm CNN, pre-LN transformer, normalised waveform, no dropouts."""
    return ModelConfig(feat_extract_norm="layer", hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=ffn, do_stable_layer_norm=True,
                       hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
                       layerdrop=0.0, feature_grad_mult=1.0, normalize=True, final_dim=768)


def _conv(dim: int) -> tuple[tuple[int, int, int], ...]:
    """BASE's seven conv layers (kernels and strides) at width `dim`."""
    return ((dim, 10, 5),) + ((dim, 3, 2),) * 4 + ((dim, 2, 2),) * 2


PRESETS = {
    "tiny": Preset(
        ModelConfig(conv_layers=_conv(32), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=128, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                    layerdrop=0.0, final_dim=32),
        TrainConfig(lr=2e-3, warmup_updates=20, max_updates=200, max_tokens=160_000, min_sample_size=8_000,
                    valid_every=50, save_every=50, log_every=10)),
    "small": Preset(
        ModelConfig(conv_layers=_conv(256), hidden_size=256, num_hidden_layers=6, num_attention_heads=4,
                    intermediate_size=1024, num_conv_pos_embeddings=64, layerdrop=0.0),
        TrainConfig(lr=1e-3, warmup_updates=200, max_updates=2_000, max_tokens=400_000, valid_every=250,
                    save_every=250, log_every=25)),
    "base": Preset(ModelConfig(), TrainConfig()),
    "large": Preset(_large(1024, 24, 16, 4096), TrainConfig()),
    "xlarge": Preset(_large(1280, 48, 16, 5120), TrainConfig()),
}


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SettingError(f"model: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def model_preset(name: str) -> ModelConfig:
    """A copy of the preset's ModelConfig."""
    return dataclasses.replace(_preset(name).model)


def train_preset(name: str) -> TrainConfig:
    """A copy of the preset's TrainConfig."""
    return dataclasses.replace(_preset(name).train)


def model_from_settings(preset: str, overrides: dict, where: str = "model_settings") -> ModelConfig:
    """The preset's ModelConfig with `overrides` (field -> value), each checked by type and range."""
    return from_dict(ModelConfig, {**dataclasses.asdict(model_preset(preset)), **overrides}, where)

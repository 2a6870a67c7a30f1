"""Model, masking and prediction-head settings (the presets are in presets.py).

Field names follow Hugging Face's `HubertConfig` where one exists, so export is
a plain copy; defaults are HuBERT BASE.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from clustering.audio import check_conv_spec

from .typed_settings import SettingError, at_least, fraction, from_dict, one_of

# Export heads -> the transformers class that loads them.
HEADS = {"none": "HubertModel", "ctc": "HubertForCTC", "classification": "HubertForSequenceClassification"}
BASE_CONV_LAYERS = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2  # (dim, kernel, stride)


@dataclass
class ModelConfig:
    """The encoder (what is exported) plus the pretraining head sizes."""

    conv_layers: tuple[tuple[int, int, int], ...] = BASE_CONV_LAYERS
    feat_extract_norm: str = "group"  # "group": group norm in the first conv (BASE); "layer": every conv (LARGE)
    conv_bias: bool = False  # biases in the CNN: fairseq's HuBERT has none; some Hugging Face LARGE configs do
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    do_stable_layer_norm: bool = False  # pre-LN transformer (fairseq `layer_norm_first`), LARGE/X-LARGE
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    hidden_dropout: float = 0.1  # after attention / FFN, and in the input projection
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0  # inside the FFN
    feat_proj_dropout: float = 0.1  # fairseq dropout_input
    layerdrop: float = 0.05
    layer_norm_eps: float = 1e-5
    feature_grad_mult: float = 0.1  # gradient scale into the CNN
    normalize: bool = False  # layer-normalise the waveform (must match feat_extract_norm="layer")
    final_dim: int = 256  # projection and unit-embedding size of the prediction head
    logit_temp: float = 0.1

    def __post_init__(self):
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)
        one_of(self, "feat_extract_norm", ("group", "layer"))
        if not isinstance(self.conv_bias, bool):
            raise SettingError(f"conv_bias: expected true or false, got {self.conv_bias!r}")
        if self.hidden_size % self.num_attention_heads:
            raise SettingError(f"hidden_size: {self.hidden_size} is not divisible by "
                               f"{self.num_attention_heads} heads")
        try:
            check_conv_spec(self.conv_spec)
        except ValueError as error:
            raise SettingError(f"conv_layers: {error}") from None

    @property
    def conv_dim(self) -> int:
        return self.conv_layers[-1][0]

    @property
    def conv_spec(self) -> tuple[tuple[int, int], ...]:
        """(kernel, stride) per conv layer: what clustering.audio's frame arithmetic takes."""
        return tuple((kernel, stride) for _, kernel, stride in self.conv_layers)


# The settings that make an encoder compute what it computes (weights aside): not the pretraining head
# (final_dim, logit_temp), nor what acts in training only (dropouts, layerdrop, feature_grad_mult).
ENCODER_SHAPE = ("conv_layers", "feat_extract_norm", "conv_bias", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size", "do_stable_layer_norm", "num_conv_pos_embeddings",
                 "num_conv_pos_embedding_groups", "layer_norm_eps", "normalize")


@dataclass
class MaskConfig:
    """Span masking: about mask_prob * T / mask_length spans of mask_length frames."""

    mask_prob: float = 0.8
    mask_length: int = 10
    min_masks: int = 2

    def __post_init__(self):
        fraction(self, "mask_prob")
        at_least(self, "mask_length", 1)
        at_least(self, "min_masks", 0)


def mask_from_settings(overrides: dict, where: str = "mask") -> MaskConfig:
    """The paper's MaskConfig with `overrides`, checked."""
    return from_dict(MaskConfig, {**dataclasses.asdict(MaskConfig()), **overrides}, where)

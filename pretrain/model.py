"""HuBERT: the encoder users keep, and the masked-prediction head used to pretrain it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .cnn import FeatureExtractor, GradMultiply, check_kernels
from .model_config import MaskConfig, ModelConfig
from .masking import span_mask
from .transformer import PositionalConv, Transformer, TransformerLayer


class FeatureProjection(nn.Module):
    """LayerNorm(C) -> Linear(C, D) -> dropout; (B, T, C) -> (B, T, D)."""

    def __init__(self, conv_dim: int, hidden: int, dropout: float, eps: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(conv_dim, eps=eps)
        self.projection = nn.Linear(conv_dim, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.projection(self.layer_norm(x)))


@dataclass
class EncoderOutput:
    layers: list[torch.Tensor]  # raw output of each transformer layer run, (B, T, D)
    last_hidden: torch.Tensor  # (B, T, D) final output (closing layer norm for pre-LN)
    padding: torch.Tensor  # (B, T) bool, True = padded frame
    mask: torch.Tensor | None  # (B, T) bool, True = masked frame
    cnn_features: torch.Tensor  # (B, T, C) CNN output (for the feature penalty)


class HubertEncoder(nn.Module):
    """CNN -> projection -> (mask) -> transformer. The part exported to Hugging Face."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(config.conv_layers, config.feat_extract_norm,
                                                  config.conv_bias)
        self.feature_projection = FeatureProjection(config.conv_dim, config.hidden_size,
                                                    config.feat_proj_dropout, config.layer_norm_eps)
        self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.encoder = Transformer(config)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames the CNN makes from `lengths` samples, (B,) -> (B,)."""
        return self.feature_extractor.output_lengths(lengths)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: torch.Tensor | MaskConfig | None = None,
                num_layers: int | None = None, normalize: bool | None = None) -> EncoderOutput:
        """wav: (B, S) float; lengths: (B,) valid samples, or None when no sample is padding
        (then no attention mask is built, so flash attention applies).

        `mask` is a (B, T) bool tensor, a MaskConfig to draw one, or None.
        The waveform is layer-normalised here when `normalize` (default:
        `config.normalize`) is set. Nothing here reads a value back from the device.
        """
        if self.config.normalize if normalize is None else normalize:
            wav = normalize_waveform(wav, lengths)
        features, frames = self.feature_extractor(wav, lengths)
        if self.config.feature_grad_mult != 1.0 and self.training:
            features = GradMultiply.apply(features, self.config.feature_grad_mult)
        batch, num_frames = features.shape[:2]
        padding = None if frames is None else \
            torch.arange(num_frames, device=wav.device)[None, :] >= frames[:, None]
        x = self.feature_projection(features)
        if isinstance(mask, MaskConfig):
            valid = torch.full((batch,), num_frames, device=wav.device) if frames is None else frames
            mask = span_mask(valid, num_frames, mask)
        if mask is not None:
            x = torch.where(mask[..., None], self.masked_spec_embed.to(x.dtype), x)
        layers, last = self.encoder(x, padding, num_layers)
        if padding is None:
            padding = torch.zeros(batch, num_frames, dtype=torch.bool, device=wav.device)
        return EncoderOutput(layers, last, padding, mask, features)


def normalize_waveform(wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Zero mean, unit variance over each utterance's valid samples (all when lengths is None);
    (B, S) -> (B, S), padding set to 0."""
    if lengths is None:
        return F.layer_norm(wav, wav.shape[-1:], eps=1e-5)
    valid = (torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]).to(wav.dtype)
    count = lengths[:, None].to(wav.dtype)
    mean = (wav * valid).sum(1, keepdim=True) / count
    var = (((wav - mean) * valid) ** 2).sum(1, keepdim=True) / count
    return (wav - mean) * torch.rsqrt(var + 1e-5) * valid


def set_kernels(model: nn.Module, choice: str) -> None:
    """Run the CNN and the positional conv of `model` on the fast or the reference kernels:
    choice "auto" (fast on CUDA), "fast" or "reference". Weights and outputs stay the same."""
    check_kernels(choice)
    for module in model.modules():
        if isinstance(module, (FeatureExtractor, PositionalConv)):
            module.kernels = choice


def compile_regions(model: nn.Module) -> None:
    """torch.compile, in place, the parts that repeat and hold no data-dependent control flow:
    the CNN, the positional conv and each transformer layer (layerdrop stays eager between
    them). State-dict names do not change, so checkpoints are the same."""
    for module in model.modules():
        if isinstance(module, (FeatureExtractor, PositionalConv, TransformerLayer)):
            module.compile()


@dataclass
class PretrainOutput:
    logits: list[torch.Tensor]  # per label set, (B, T, K_i): cosine(proj(h_t), e_c) / temperature
    mask: torch.Tensor  # (B, T) bool, True = masked
    padding: torch.Tensor  # (B, T) bool, True = padded
    feature_penalty: torch.Tensor  # scalar, mean(square(CNN output))
    hidden: torch.Tensor  # (B, T, D) last layer


class HubertPretrain(nn.Module):
    """Encoder + one (final_proj, unit embeddings) head per label set."""

    def __init__(self, config: ModelConfig, num_units: Sequence[int], mask: MaskConfig = MaskConfig()):
        super().__init__()
        self.config, self.mask_config, self.num_units = config, mask, list(num_units)
        self.encoder = HubertEncoder(config)
        self.final_proj = nn.ModuleList(nn.Linear(config.hidden_size, config.final_dim) for _ in num_units)
        self.unit_embeddings = nn.ParameterList(
            nn.Parameter(torch.empty(k, config.final_dim).uniform_()) for k in num_units)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None,
                mask: bool | torch.Tensor = True) -> PretrainOutput:
        """wav (B, S), lengths (B,). `mask`: True draws span masks, a (B, T) tensor uses it."""
        spec = self.mask_config if mask is True else (mask if isinstance(mask, torch.Tensor) else None)
        out = self.encoder(wav, lengths, spec)
        hidden = out.last_hidden
        logits = self.unit_logits(hidden)
        used_mask = out.mask if out.mask is not None else torch.zeros_like(out.padding)
        penalty = out.cnn_features.float().pow(2).mean()
        return PretrainOutput(logits, used_mask, out.padding, penalty, hidden)

    def unit_logits(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """hidden (B, T, D) -> per label set (B, T, K_i) float32 logits. The heads run in float32
        whatever the autocast (as fairseq computes the similarity), so the loss is not rounded."""
        with torch.autocast(hidden.device.type, enabled=False):
            hidden = hidden.float()
            return [cosine_logits(proj(hidden), emb, self.config.logit_temp)
                    for proj, emb in zip(self.final_proj, self.unit_embeddings)]


def cosine_logits(x: torch.Tensor, embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """x: (B, T, F), embeddings: (K, F) -> (B, T, K) cosine similarity / temperature, in float32
    (outside autocast: under it the matmul would be cast back down)."""
    x = F.normalize(x.float(), dim=-1, eps=1e-8)
    e = F.normalize(embeddings.float(), dim=-1, eps=1e-8)
    return (x @ e.T) / temperature

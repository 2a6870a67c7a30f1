"""The waveform CNN: seven strided convolutions, 16 kHz samples -> 50 Hz frames.

Module names match Hugging Face's `HubertFeatureEncoder`
(`conv_layers.{i}.conv`, `conv_layers.{i}.layer_norm`) so export is a copy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(nn.Module):
    """Conv1d (bias only with `bias`) -> optional norm -> GELU. norm: None, "group" or "layer"."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, norm: str | None,
                 bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.norm = kernel, stride, norm
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)  # fairseq's ConvFeatureExtractionModel init (bias: PyTorch's)
        if norm == "group":  # one group per channel: each channel normalised over time
            self.layer_norm = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.layer_norm = nn.LayerNorm(out_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths - self.kernel, self.stride, rounding_mode="floor") + 1

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, C_in, S) -> (B, C_out, S'), lengths (B,) -> (B,)."""
        x = self.conv(x)
        lengths = None if lengths is None else self.output_lengths(lengths)
        if self.norm == "group":
            x = _masked_channel_norm(x, lengths, self.layer_norm) if lengths is not None \
                else self.layer_norm(x)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x), lengths


def _masked_channel_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """Per-channel normalisation over the valid frames only, so padding never changes
    an utterance's features (a padded batch equals each utterance alone).

    Equal to `norm(x)` when no frame is padded. x: (B, C, T), lengths: (B,).
    """
    if bool((lengths == x.shape[2]).all()):
        return norm(x)
    valid = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
    count = valid.sum(2, keepdim=True).clamp(min=1)
    mean = (x * valid).sum(2, keepdim=True) / count
    var = (((x - mean) * valid) ** 2).sum(2, keepdim=True) / count
    x = (x - mean) * torch.rsqrt(var + norm.eps)
    return x * norm.weight[None, :, None] + norm.bias[None, :, None]


class FeatureExtractor(nn.Module):
    """wav (B, S) -> features (B, T, C), lengths (B,) samples -> (B,) frames.

    conv_layers: (dim, kernel, stride) per layer; norm: "group" or "layer"; bias: conv biases.
    """

    def __init__(self, conv_layers: tuple[tuple[int, int, int], ...], norm: str, bias: bool = False):
        super().__init__()
        layers, in_dim = [], 1
        for index, (dim, kernel, stride) in enumerate(conv_layers):
            layer_norm = "layer" if norm == "layer" else ("group" if index == 0 else None)
            layers.append(ConvLayer(in_dim, dim, kernel, stride, layer_norm, bias))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self.conv_layers:
            lengths = layer.output_lengths(lengths)
        return lengths

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        x = wav[:, None, :]
        for layer in self.conv_layers:
            x, lengths = layer(x, lengths)
        return x.transpose(1, 2), lengths


class GradMultiply(torch.autograd.Function):
    """Identity forward; gradient scaled by `scale` (fairseq's feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None

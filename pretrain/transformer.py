"""Convolutional positional embedding and the post-LN / pre-LN transformer.

Module names match Hugging Face's `HubertEncoder` / `HubertEncoderStableLayerNorm`.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .cnn import fast_kernels
from .model_config import ModelConfig


class PositionalConv(nn.Module):
    """Grouped conv over time with weight norm, then GELU; x (B, T, D) -> (B, T, D).

    `kernels` picks nn.Conv1d (reference) or `grouped_time_conv` (fast): the same function
    of the same weights (see pretrain/cnn.py for the choices)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))  # fairseq, before weight norm
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0  # an even kernel makes one frame too many
        self.kernels = "auto"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_kernels(self.kernels, x):
            return F.gelu(grouped_time_conv(x, self.conv.weight, self.conv.bias, self.conv.groups))
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, :-self.trim]
        return F.gelu(y).transpose(1, 2)


def grouped_time_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """The positional embedding's conv1d (K // 2 zeros in front, an even K's extra frame trimmed)
    as a correlation through the FFT, per group, in float32.

    x: (B, T, D), weight: (D, D / G, K), bias: (D,) -> (B, T, D), equal to
    `conv1d(x.transpose(1, 2), weight, bias, padding=K // 2, groups=G)[..., :T].transpose(1, 2)`.
    cuDNN runs this kernel-128 grouped conv at a small fraction of the GPU's peak; through the
    FFT it is ~50x fewer FLOPs (per frequency a (D / G) x (D / G) complex product per group)
    and no im2col copy. FFT lengths come four per octave of T (`fft_size`), so varying T reuses a
    few cached plans and few compiled graphs.
    """
    batch, frames, dim = x.shape
    kernel = weight.shape[-1]
    size = fft_size(frames + kernel - 1)  # no wrap-around for the T frames kept
    out_dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    with torch.autocast(x.device.type, enabled=False):
        signal = F.pad(x.float().transpose(1, 2), (kernel // 2, 0)).reshape(batch, groups, dim // groups, -1)
        spectrum = torch.fft.rfft(signal, n=size)  # (B, G, C, F)
        taps = torch.fft.rfft(weight.float().view(groups, dim // groups, dim // groups, kernel), n=size)
        mixed = torch.einsum("bgcf,gocf->bgof", spectrum, taps.conj())  # correlation = product with conj
        y = torch.fft.irfft(mixed, n=size)[..., :frames].reshape(batch, dim, frames)
        y = y + bias.float()[:, None]
    return y.transpose(1, 2).to(out_dtype)


def fft_size(n: int) -> int:
    """n rounded up to a multiple of the smallest power of two `grain` with n <= 8 * grain: for
    n > 8 that is m * grain with m in 5..8, a 7-smooth length (which cuFFT and pocketfft transform
    fast) under 1.25 n; n itself for n <= 8.

    Only the loop's comparisons depend on n, so under torch.compile (frames dynamic) dynamo guards
    on the octave of n alone and the rounding stays symbolic: one graph per octave of frame
    counts, not one per crop length."""
    grain = 1
    while 8 * grain < n:
        grain *= 2
    return (n + grain - 1) // grain * grain


# cuDNN's attention (PyTorch's first choice on recent GPUs) builds a graph for every new
# (batch, frames) shape, and crop-mode batches change shape at nearly every update (its cost is in
# benchmarks/RESULTS.md). Flash and memory-efficient attention have no per-shape set-up.
GPU_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class Attention(nn.Module):
    """Multi-head self-attention through scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """x: (B, T, D); keep: (B, 1, 1, T) bool, True for real frames, or None."""
        batch, frames, dim = x.shape

        def split(t):
            return t.view(batch, frames, self.heads, dim // self.heads).transpose(1, 2)

        with sdpa_kernel(GPU_ATTENTION) if x.is_cuda else contextlib.nullcontext():
            y = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)),
                                               split(self.v_proj(x)), attn_mask=keep,
                                               dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(batch, frames, dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, activation_dropout: float, dropout: float):
        super().__init__()
        self.intermediate_dense, self.output_dense = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.intermediate_dropout = nn.Dropout(activation_dropout)
        self.output_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.intermediate_dropout(F.gelu(self.intermediate_dense(x)))
        return self.output_dropout(self.output_dense(x))


class TransformerLayer(nn.Module):
    """Post-LN (BASE) or pre-LN (`pre_norm`, LARGE) block; x (B, T, D) -> (B, T, D)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        dim = config.hidden_size
        self.pre_norm = config.do_stable_layer_norm
        self.attention = Attention(dim, config.num_attention_heads, config.attention_dropout)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(dim, config.intermediate_size, config.activation_dropout,
                                        config.hidden_dropout)
        self.final_layer_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.layer_norm(x), keep))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.dropout(self.attention(x, keep)))
        return self.final_layer_norm(x + self.feed_forward(x))


class Transformer(nn.Module):
    """Positional conv + layers. Post-LN normalises before the layers, pre-LN after them."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.pre_norm = config.do_stable_layer_norm
        self.layerdrop = config.layerdrop
        self.pos_conv_embed = PositionalConv(config.hidden_size, config.num_conv_pos_embeddings,
                                             config.num_conv_pos_embedding_groups)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.num_hidden_layers))
        for module in self.layers.modules():
            if isinstance(module, nn.Linear):  # BERT's init, as fairseq's TransformerEncoder
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None,
                num_layers: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x: (B, T, D), padding: (B, T) bool -> (output of each layer run, final output).

        With `num_layers`, stops after that many layers. Layer outputs are raw
        (what teachers are built from, as fairseq's `output_layer`); the final
        output of a pre-LN stack gets the closing layer norm."""
        if padding is not None:
            x = x.masked_fill(padding[..., None], 0.0)
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        x = self.dropout(x)
        keep = None if padding is None else ~padding[:, None, None, :]
        outputs = []
        for layer in self.layers[:num_layers]:
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                outputs.append(x)
                continue
            x = layer(x, keep)
            outputs.append(x)
        return outputs, self.layer_norm(x) if self.pre_norm else x

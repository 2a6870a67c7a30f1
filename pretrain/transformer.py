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

from .config import ModelConfig


class PositionalConv(nn.Module):
    """Grouped conv over time with weight norm; x (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))  # fairseq, before weight norm
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0  # an even kernel makes one frame too many

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, :-self.trim]
        return F.gelu(y).transpose(1, 2)


# cuDNN's attention (PyTorch's first choice on recent GPUs) builds a graph for every new
# (batch, frames) shape: ~175 ms per BASE step on an H100, and crop-mode batches change shape
# at nearly every update. Flash and memory-efficient attention have no per-shape set-up.
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
        keep = None if padding is None or not padding.any() else ~padding[:, None, None, :]
        outputs = []
        for layer in self.layers[:num_layers]:
            if self.training and self.layerdrop > 0 and torch.rand(()) < self.layerdrop:
                outputs.append(x)
                continue
            x = layer(x, keep)
            outputs.append(x)
        return outputs, self.layer_norm(x) if self.pre_norm else x

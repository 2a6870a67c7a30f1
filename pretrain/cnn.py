"""The waveform CNN: strided convolutions, 16 kHz samples -> 50 Hz frames.

Module names match Hugging Face's `HubertFeatureEncoder`
(`conv_layers.{i}.conv`, `conv_layers.{i}.layer_norm`) so export is a copy.

Two ways to compute the same function from the same weights:
- the reference path: `nn.Conv1d` in a (batch, channels, time) layout, what the
  torchaudio and transformers parity tests check;
- the fast path: every convolution as matrix products in a (batch, time, channels)
  layout. A layer whose kernel equals its stride is a reshape and one matmul; a
  wider kernel is split into stride-wide groups of taps, each a strided view that
  BLAS reads in place. The first layer (one input channel, 512 outputs per 5
  samples) is a bandwidth problem: its group norm is folded into per-utterance
  weights from a 10 x 10 covariance of the waveform, so the 512-channel output is
  written once, never read back for statistics.
`kernels` ("auto": fast on CUDA, reference elsewhere; "fast"; "reference") picks one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNELS = ("auto", "fast", "reference")


def check_kernels(choice: str) -> str:
    """`choice` if it names a path ("auto", "fast", "reference"), else ValueError."""
    if choice not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {choice!r}")
    return choice


def fast_kernels(choice: str, x: torch.Tensor) -> bool:
    """Whether `choice` ("auto", "fast", "reference") runs the fast path for input `x`."""
    return check_kernels(choice) == "fast" or (choice == "auto" and x.is_cuda)


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
        """Reference path. x: (B, C_in, S) -> (B, C_out, S'), lengths (B,) -> (B,) or None (all valid)."""
        x = self.conv(x)
        lengths = None if lengths is None else self.output_lengths(lengths)
        if self.norm == "group":
            x = self.layer_norm(x) if lengths is None else _masked_channel_norm(x, lengths, self.layer_norm)
        elif self.norm == "layer":
            x = self.layer_norm(x.transpose(1, 2)).transpose(1, 2)
        return F.gelu(x), lengths

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path of a layer after the first (group norm only ever sits in the first).
        x: (B, T, C_in) -> (B, T', C_out)."""
        y = strided_matmul_conv(x, self.conv.weight, self.stride, self.conv.bias)
        if self.norm == "layer":
            y = F.layer_norm(y, y.shape[-1:], self.layer_norm.weight, self.layer_norm.bias, self.layer_norm.eps)
        return F.gelu(y)

    def forward_fast_first(self, wav: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
        """Fast path of the first layer (one input channel). wav: (B, S); frames: (B,) valid output
        frames or None (all valid) -> (B, T, C_out)."""
        patches = wav.unfold(1, self.kernel, self.stride)  # (B, T, kernel), overlapping view
        weight = self.conv.weight[:, 0, :].t()  # (kernel, C_out)
        if self.norm == "group":
            scale, shift = _folded_group_norm(patches, weight, frames, self.layer_norm)
            return F.gelu(torch.baddbmm(shift[:, None, :], patches, weight[None] * scale[:, None, :]))
        y = patches @ weight
        if self.conv.bias is not None:
            y = y + self.conv.bias
        if self.norm == "layer":
            y = F.layer_norm(y, y.shape[-1:], self.layer_norm.weight, self.layer_norm.bias, self.layer_norm.eps)
        return F.gelu(y)


def _masked_channel_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """Per-channel normalisation over the valid frames only, so padding never changes
    an utterance's features (a padded batch equals each utterance alone).

    Equal to `norm(x)` when no frame is padded. x: (B, C, T), lengths: (B,).
    """
    valid = (torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
    count = valid.sum(2, keepdim=True).clamp(min=1)
    mean = (x * valid).sum(2, keepdim=True) / count
    var = (((x - mean) * valid) ** 2).sum(2, keepdim=True) / count
    x = (x - mean) * torch.rsqrt(var + norm.eps)
    return x * norm.weight[None, :, None] + norm.bias[None, :, None]


def _folded_group_norm(patches: torch.Tensor, weight: torch.Tensor, frames: torch.Tensor | None,
                       norm: nn.GroupNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance (scale, shift), each (B, C), such that `(patches @ weight) * scale + shift`
    equals the conv output normalised per channel over the valid frames, then `norm`'s affine.

    A channel's mean is `w . mean(patch)` and its variance `w^T cov(patch) w`, so the statistics
    of the (B, T, C) output come from a (B, kernel, kernel) covariance (in float64: speech
    patches are nearly collinear). The conv bias cancels. patches: (B, T, kernel) -> (B, C) x 2.
    """
    p = patches.double()
    if frames is None:
        valid = p.new_ones(p.shape[0], p.shape[1], 1)
        count = p.new_full((p.shape[0], 1), p.shape[1])
    else:
        valid = (torch.arange(p.shape[1], device=p.device)[None, :] < frames[:, None]).double()[..., None]
        count = frames.double().clamp(min=1)[:, None]
    mean = (p * valid).sum(1) / count  # (B, kernel)
    centred = (p - mean[:, None, :]) * valid
    cov = centred.transpose(1, 2) @ centred / count[..., None]  # (B, kernel, kernel)
    w = weight.double()
    var = ((cov @ w) * w).sum(1)  # (B, C)
    scale = norm.weight.double() * torch.rsqrt(var + norm.eps)
    shift = norm.bias.double() - (mean @ w) * scale
    return scale.to(weight.dtype), shift.to(weight.dtype)


def strided_matmul_conv(x: torch.Tensor, weight: torch.Tensor, stride: int,
                        bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv1d (no padding) in a (batch, time, channels) layout as matrix products.

    x: (B, T, C_in), weight: (C_out, C_in, K) -> (B, T', C_out), T' = (T - K) // stride + 1.
    Taps are taken `stride` at a time: taps [j, j + stride) of every output frame form a
    (B, T', stride * C_in) view of x whose rows lie `stride * C_in` apart, a matrix BLAS reads
    in place; K == stride is a single reshape.
    """
    batch, frames, channels = x.shape
    out_dim, _, kernel = weight.shape
    out_frames = (frames - kernel) // stride + 1
    taps = weight.permute(2, 1, 0).reshape(kernel * channels, out_dim)  # row j * C_in + c: tap j, channel c
    flat = x.reshape(batch, frames * channels)
    y = None
    for first in range(0, kernel, stride):
        width = min(stride, kernel - first) * channels
        # (B, T', width) view: row t starts at sample (first + t * stride) * C_in
        window = flat[:, first * channels:].unfold(1, width, stride * channels)[:, :out_frames]
        part = _window_matmul(window, taps[first * channels:first * channels + width])
        y = part if y is None else y + part
    return y if bias is None else y + bias


def _window_matmul(window: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, T, K) strided view @ (K, N) -> (B, T, N). On CUDA one batched GEMM reads the view in
    place (its batch stride is arbitrary); on the CPU matmul's contiguous copy is faster."""
    if window.is_cuda:
        return torch.bmm(window, weight.expand(window.shape[0], -1, -1))
    return window @ weight


class FeatureExtractor(nn.Module):
    """wav (B, S) -> features (B, T, C), lengths (B,) samples -> (B,) frames (None stays None).

    conv_layers: (dim, kernel, stride) per layer; norm: "group" or "layer"; bias: conv biases.
    `kernels` picks the path (see the module docstring); both give the same function.
    """

    def __init__(self, conv_layers: tuple[tuple[int, int, int], ...], norm: str, bias: bool = False):
        super().__init__()
        layers, in_dim = [], 1
        for index, (dim, kernel, stride) in enumerate(conv_layers):
            layer_norm = "layer" if norm == "layer" else ("group" if index == 0 else None)
            layers.append(ConvLayer(in_dim, dim, kernel, stride, layer_norm, bias))
            in_dim = dim
        self.conv_layers = nn.ModuleList(layers)
        self.kernels = "auto"

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self.conv_layers:
            lengths = layer.output_lengths(lengths)
        return lengths

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        frames = None if lengths is None else self.output_lengths(lengths)
        if fast_kernels(self.kernels, wav):
            return self._forward_fast(wav, lengths), frames
        x = wav[:, None, :]
        for layer in self.conv_layers:
            x, lengths = layer(x, lengths)
        return x.transpose(1, 2), frames

    def _forward_fast(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """wav (B, S) -> (B, T, C) contiguous."""
        first, *rest = self.conv_layers
        x = first.forward_fast_first(wav, None if lengths is None else first.output_lengths(lengths))
        for layer in rest:
            x = layer.forward_fast(x)
        return x


class GradMultiply(torch.autograd.Function):
    """Identity forward; gradient scaled by `scale` (fairseq's feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None

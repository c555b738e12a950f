"""A small transformer encoder over log-mel patches, for long-range context across an utterance.

Waveforms → fixed log-mel front end (:mod:`serkit.networks.logmel`) → a convolutional patch stem
(two 3×3 stride-2 convolutions: one token per 40 ms, each seeing ~70 ms and every mel band) →
sinusoidal positions → pre-norm transformer layers with key-padding masks → frame features for a
pooling head. Attention is written out (no fused kernels), so padded batches give what lone clips
give and the graph exports to ONNX as plain MatMul/Softmax.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from .heads import conv_out_length, lengths_to_mask
from .logmel import LogMelFrontEnd

__all__ = ["SpectroTransformer", "sinusoidal_positions"]


def sinusoidal_positions(n: int | torch.Tensor, dim: int, device=None) -> torch.Tensor:
    """[shape=(n, dim)] the sinusoidal position codes of Vaswani et al. (2017); any length, nothing learned."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = pos * freq[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(angles.shape[0], -1)[:, :dim]


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // self.heads)  # [B, H, T, T]
        # every clip has at least one valid token, so no row is all -inf
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        w = self.dropout(torch.softmax(scores, dim=-1))
        return self.out(torch.matmul(w, v).transpose(1, 2).reshape(b, t, d))


class _EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + attention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = _SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), key_mask))
        return x + self.dropout(self.ff(self.norm2(x)))


class SpectroTransformer(nn.Module):
    """Waveforms [B, N] → log-mel patches → transformer encoder → frame features [B, d_model, T'].

    Parameters
    ----------
    sampling_rate : int
        Hz of the input waveform.
    n_mels : int
        Mel bands (64; divisible by 4).
    stem_channels : int
        Channels of the two stride-2 patch convolutions.
    d_model, heads, layers, ff_dim
        Encoder width, attention heads (must divide ``d_model``), depth and feed-forward width.
    dropout : float
        Dropout in attention, feed-forward and on the embedded tokens.
    spec_augment : dict, bool or None
        :class:`serkit.networks.logmel.SpecAugment` options (training mode only).
    """

    def __init__(
        self,
        sampling_rate: int = 16000,
        *,
        n_mels: int = 64,
        stem_channels: int = 32,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 3,
        ff_dim: int = 256,
        dropout: float = 0.1,
        spec_augment: dict | bool | None = True,
    ):
        super().__init__()
        if n_mels % 4:
            raise ConfigError(f"n_mels {n_mels} must be divisible by 4 (two stride-2 patch convolutions)")
        if d_model < 1 or heads < 1 or d_model % heads:
            raise ConfigError(
                f"d_model {d_model} must be a positive multiple of heads {heads}; e.g. d_model 128, heads 4"
            )
        if layers < 1 or ff_dim < 1 or stem_channels < 1:
            raise ConfigError(f"layers, ff_dim and stem_channels must be >= 1, got {layers}, {ff_dim}, {stem_channels}")
        self.front = LogMelFrontEnd(sampling_rate, n_mels=n_mels, spec_augment=spec_augment)
        self.stem = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(1, stem_channels, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(stem_channels),
                    nn.ReLU(),
                ),
                nn.Sequential(
                    nn.Conv2d(stem_channels, stem_channels, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(stem_channels),
                    nn.ReLU(),
                ),
            ]
        )
        self.embed = nn.Linear(stem_channels * (n_mels // 4), d_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(_EncoderLayer(d_model, heads, ff_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.out_channels = d_model
        self.frames_per_second = 25.0
        self.min_samples = 1

    def frame_lengths(self, lengths):
        """Output tokens for ``lengths`` input samples (ints, arrays or tensors)."""
        frames = self.front.frame_lengths(lengths)
        for _ in self.stem:
            frames = conv_out_length(frames, 3, 2, 1)
        return frames

    def forward(self, waveform: torch.Tensor, *, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Token features [B, d_model, T'] (zero past each clip's :meth:`frame_lengths`); ``lengths`` in samples."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[-1], dtype=torch.long, device=waveform.device)
        x, frames = self.front(waveform, lengths)
        x = x[:, None]
        for conv in self.stem:
            x = conv(x)
            frames = conv_out_length(frames, 3, 2, 1)
            x = x * lengths_to_mask(frames, x.shape[-1])[:, None, None, :].to(x.dtype)
        b, c, m, t = x.shape
        h = self.embed(x.reshape(b, c * m, t).transpose(1, 2))  # [B, T', d_model]
        h = self.dropout(h + sinusoidal_positions(t, h.shape[-1], device=h.device)[None])
        mask = lengths_to_mask(frames, t)
        for layer in self.layers:
            h = layer(h, mask)
        h = self.norm(h).transpose(1, 2)
        return h * mask[:, None, :].to(h.dtype)

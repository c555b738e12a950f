"""CNN + (Bi)LSTM on log-mel spectrograms: 2-D convolutions for local spectral patterns, an LSTM for time.

The network takes waveforms (its log-mel front end is fixed, :mod:`serkit.networks.logmel`) and
returns frame features for a pooling head. Every stage carries valid lengths and zeroes what lies
beyond them, and the backward LSTM reads each clip from its own last valid frame, so a clip gives
the same output alone or zero-padded in a batch (and the graph exports to ONNX without packed
sequences).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .heads import lengths_to_mask
from .logmel import LogMelFrontEnd

__all__ = ["CNNLSTM", "reverse_within_lengths"]


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row of ``x`` [B, T, D] over its first ``lengths[b]`` steps; padding stays in place.

    Its own inverse. ``reverse_within_lengths(x, [2, 3])`` maps rows ``[a, b, pad]`` and
    ``[c, d, e]`` to ``[b, a, pad]`` and ``[e, d, c]``.
    """
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    n = lengths.to(x.device)[:, None]
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx[:, :, None].expand(-1, -1, x.shape[2]))


class _ConvBlock(nn.Module):
    """3×3 conv → BN → ReLU → 2×2 max-pool on [B, C, mel, T]; halves mel bands and frames."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor, frames: torch.Tensor):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        frames = frames // 2
        # zero the frames past each clip's end: the next 3×3 convolution must see what a lone clip sees
        return x * lengths_to_mask(frames, x.shape[-1])[:, None, None, :].to(x.dtype), frames


class CNNLSTM(nn.Module):
    """Waveforms [B, N] → log-mel (64 bands) → CNN blocks → (Bi)LSTM → frame features [B, D, T'].

    Parameters
    ----------
    sampling_rate : int
        Hz of the input waveform (the log-mel uses 32 ms frames and a 10 ms hop at any rate).
    n_mels : int
        Mel bands; must be divisible by ``2 ** len(channels)``.
    channels : sequence of int
        Output channels of the convolution blocks; each block halves bands and frames.
    lstm_hidden : int
        Hidden units per LSTM direction.
    lstm_layers : int
        Stacked LSTM layers.
    bidirectional : bool
        A second LSTM reads every clip backwards from its last valid frame.
    dropout : float
        Dropout on the CNN output and between LSTM layers.
    spec_augment : dict, bool or None
        :class:`serkit.networks.logmel.SpecAugment` options (training mode only).

    Attributes
    ----------
    out_channels : int
        D: ``lstm_hidden * (2 if bidirectional else 1)``.
    frames_per_second : float
        Output frame rate (100 / 2 ** len(channels)).
    """

    def __init__(
        self,
        sampling_rate: int = 16000,
        *,
        n_mels: int = 64,
        channels=(16, 32, 64),
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.1,
        spec_augment: dict | bool | None = True,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ConfigError(f"cnn channels must be a non-empty list of positive widths, got {list(channels)}")
        if n_mels % (2 ** len(channels)):
            raise ConfigError(
                f"n_mels {n_mels} is not divisible by 2^{len(channels)} (one halving per CNN block); "
                "use 64 mel bands with up to 6 blocks"
            )
        if lstm_hidden < 1 or lstm_layers < 1:
            raise ConfigError(f"lstm_hidden and lstm_layers must be >= 1, got {lstm_hidden} and {lstm_layers}")
        self.front = LogMelFrontEnd(sampling_rate, n_mels=n_mels, spec_augment=spec_augment)
        self.cnn = nn.ModuleList(_ConvBlock(cin, cout) for cin, cout in zip((1,) + channels[:-1], channels))
        self.dropout = nn.Dropout(dropout)
        width = channels[-1] * (n_mels // 2 ** len(channels))
        self.forward_lstms = nn.ModuleList()
        self.backward_lstms = nn.ModuleList()
        for _ in range(lstm_layers):
            self.forward_lstms.append(nn.LSTM(width, lstm_hidden, batch_first=True))
            if bidirectional:
                self.backward_lstms.append(nn.LSTM(width, lstm_hidden, batch_first=True))
            width = lstm_hidden * (2 if bidirectional else 1)
        self.out_channels = width
        self.bidirectional = bool(bidirectional)
        self.frames_per_second = 100.0 / 2 ** len(channels)
        #: shortest input with one output frame
        self.min_samples = (2 ** len(channels) - 1) * self.front.logmel.hop_length

    def frame_lengths(self, lengths):
        """Output frames for ``lengths`` input samples (ints, arrays or tensors)."""
        frames = self.front.frame_lengths(lengths)
        for _ in self.cnn:
            frames = frames // 2
        return frames

    def forward(self, waveform: torch.Tensor, *, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Frame features [B, out_channels, T'] (zero past each clip's :meth:`frame_lengths`); ``lengths`` in samples."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[-1], dtype=torch.long, device=waveform.device)
        x, frames = self.front(waveform, lengths)
        x = x[:, None]  # [B, 1, mel, T]
        for block in self.cnn:
            x, frames = block(x, frames)
        b, c, m, t = x.shape
        h = self.dropout(x.reshape(b, c * m, t).transpose(1, 2))  # [B, T', C·mel]
        for i, fwd in enumerate(self.forward_lstms):
            if i:
                h = self.dropout(h)
            out = fwd(h)[0]
            if self.bidirectional:
                back = self.backward_lstms[i](reverse_within_lengths(h, frames))[0]
                out = torch.cat([out, reverse_within_lengths(back, frames)], dim=-1)
            h = out
        h = h.transpose(1, 2)
        return h * lengths_to_mask(frames, h.shape[-1])[:, None, :].to(h.dtype)

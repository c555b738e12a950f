"""A fixed log-mel front end and SpecAugment as torch modules, so spectrogram networks take waveforms.

:class:`LogMel` computes, inside the network, what :func:`serkit.features.spectral.log_mel` computes
in numpy (512-point periodic-Hann frames centred on every 10 ms hop with zero padding, power
spectrum, librosa's Slaney mel filterbank, ``10 log10`` floored at -100 dB; no ``top_db``
clipping): a network with this front end is a waveform model, and its whole audio → probabilities
path exports to one ONNX graph (``torch.stft`` becomes the ONNX ``STFT`` operator).
:class:`LogMelFrontEnd` adds a fixed rescaling, a per-band batch norm and SpecAugment, and zeroes
the frames beyond each clip's length, so a clip gives the same features alone or in a padded batch.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..errors import ConfigError
from .heads import lengths_to_mask

__all__ = ["LogMel", "SpecAugment", "LogMelFrontEnd", "DB_FLOOR"]

#: Floor of the log-mel in dB (a power of 1e-10), as :func:`serkit.features.spectral.log_mel`.
DB_FLOOR = -100.0


class LogMel(nn.Module):
    """Waveforms [B, N] → log-mel in dB [B, n_mels, 1 + N // hop_length]; no learned parameters.

    Frame ``t`` is centred on sample ``t * hop_length`` (half a frame of zeros at both ends), so the
    frames of a zero-padded clip's valid part do not depend on the padding.

    Parameters
    ----------
    sampling_rate : int
        Hz.
    n_mels : int
        Mel bands (64).
    n_fft : int
        Frame length and FFT size in samples (512: 32 ms at 16 kHz).
    hop_length : int
        Samples between frames (160: 10 ms at 16 kHz).
    fmin, fmax : float
        Mel range in Hz (``fmax=None``: Nyquist).
    """

    def __init__(
        self,
        sampling_rate: int = 16000,
        *,
        n_mels: int = 64,
        n_fft: int = 512,
        hop_length: int = 160,
        fmin: float = 0.0,
        fmax: float | None = None,
    ):
        super().__init__()
        from ..melscale import mel_filterbank

        self.sampling_rate, self.n_mels, self.n_fft, self.hop_length = (
            int(sampling_rate),
            int(n_mels),
            int(n_fft),
            int(hop_length),
        )
        mel = mel_filterbank(self.sampling_rate, self.n_fft, self.n_mels, fmin, fmax)
        # fixed: rebuilt from the arguments, never saved with the weights
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)  # [n_mels, n_fft // 2 + 1]

    def frame_lengths(self, lengths):
        """Valid frames for ``lengths`` valid samples: ``1 + lengths // hop_length`` (ints, arrays or tensors)."""
        return lengths // self.hop_length + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        x = nn.functional.pad(waveform, (half, half))
        options = {
            "hop_length": self.hop_length,
            "win_length": self.n_fft,
            "window": self.window,
            "center": False,
            "onesided": True,
        }
        if torch.onnx.is_in_onnx_export():
            # the TorchScript ONNX exporter has no complex tensors: the (deprecated) real layout
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                spec = torch.stft(x, self.n_fft, return_complex=False, **options)  # [B, F, T, 2]
        else:
            spec = torch.view_as_real(torch.stft(x, self.n_fft, return_complex=True, **options))
        power = spec.pow(2).sum(-1)
        return 10.0 * torch.log10(torch.matmul(self.mel, power).clamp(min=10 ** (DB_FLOOR / 10)))

    def extra_repr(self) -> str:
        return f"sampling_rate={self.sampling_rate}, n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length}"


class SpecAugment(nn.Module):
    """SpecAugment's frequency and time masking (Park et al., 2019), in training mode only.

    Each clip gets ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of
    up to ``time_width`` frames (never more than ``max_time_fraction`` of the clip's valid frames)
    set to ``value``. Draws come from torch's generator, which the trainer seeds.
    """

    def __init__(
        self,
        *,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 20,
        max_time_fraction: float = 0.2,
        value: float = 0.0,
    ):
        super().__init__()
        for name, v in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            if int(v) < 0:
                raise ConfigError(f"spec_augment.{name} must be >= 0, got {v}")
        if not 0 <= max_time_fraction <= 1:
            raise ConfigError(f"spec_augment.max_time_fraction must be in [0, 1], got {max_time_fraction}")
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.max_time_fraction, self.value = float(max_time_fraction), float(value)

    @staticmethod
    def _bands(size: torch.Tensor, widest: torch.Tensor, n_bins: int, device) -> torch.Tensor:
        """[B, n_bins] mask of one random band per row: width in [0, widest], inside [0, size)."""
        b = size.shape[0]
        width = (torch.rand(b, device=device) * (widest + 1).float()).floor()
        start = (torch.rand(b, device=device) * (size - width + 1).clamp(min=1).float()).floor()
        pos = torch.arange(n_bins, device=device)[None, :]
        return (pos >= start[:, None]) & (pos < (start + width)[:, None])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x`` [B, n_mels, T] with ``lengths`` [B] valid frames → masked copy (unchanged in eval mode)."""
        if not self.training:
            return x
        b, m, t = x.shape
        dev = x.device
        mask = torch.zeros(b, m, t, dtype=torch.bool, device=dev)
        full = torch.full((b,), m, device=dev)
        for _ in range(self.freq_masks):
            mask |= self._bands(full, torch.full((b,), min(self.freq_width, m), device=dev), m, dev)[:, :, None]
        lengths = lengths.to(dev)
        widest = torch.minimum(
            torch.full_like(lengths, self.time_width), (lengths.float() * self.max_time_fraction).long()
        )
        for _ in range(self.time_masks):
            mask |= self._bands(lengths, widest, t, dev)[:, None, :]
        return x.masked_fill(mask, self.value)

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks={self.time_masks}, "
            f"time_width={self.time_width}"
        )


class LogMelFrontEnd(nn.Module):
    """Waveforms → normalised log-mel [B, n_mels, T] with valid frame lengths.

    ``(dB - center_db) / scale_db`` (a fixed rescaling to roughly unit range, so the network also
    starts sensibly with frozen batch norms) → per-band batch norm → SpecAugment (training only) →
    zero beyond each clip's frames.

    Parameters
    ----------
    sampling_rate, n_mels
        As :class:`LogMel` (512-point frames, 10 ms hop).
    spec_augment
        :class:`SpecAugment` options, ``True`` for its defaults, or ``None``/``False`` for none.
    """

    #: rough centre and spread of speech log-mel values in dB (22 EmoDB clips: mean -36 dB, std 22 dB)
    center_db, scale_db = -36.0, 22.0

    def __init__(self, sampling_rate: int = 16000, *, n_mels: int = 64, spec_augment: dict | bool | None = True):
        super().__init__()
        hop = round(0.010 * sampling_rate)
        n_fft = 1 << math.ceil(math.log2(0.032 * sampling_rate))
        self.logmel = LogMel(sampling_rate, n_mels=n_mels, n_fft=n_fft, hop_length=hop)
        self.norm = nn.BatchNorm1d(n_mels)
        if spec_augment is True:
            spec_augment = {}
        if spec_augment not in (None, False) and not isinstance(spec_augment, dict):
            raise ConfigError(
                f"spec_augment must be true, false or a mapping of SpecAugment options, got {spec_augment!r}"
            )
        try:
            self.spec_augment = SpecAugment(**spec_augment) if isinstance(spec_augment, dict) else None
        except TypeError as exc:
            raise ConfigError(
                f"bad spec_augment options {spec_augment} ({exc}); valid: freq_masks, freq_width, "
                "time_masks, time_width, max_time_fraction"
            ) from None
        self.n_mels = n_mels

    def frame_lengths(self, lengths):
        return self.logmel.frame_lengths(lengths)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor):
        """Returns ``(features [B, n_mels, T], frame lengths [B])``."""
        frames = self.frame_lengths(lengths)
        mask = lengths_to_mask(frames, waveform.shape[-1] // self.logmel.hop_length + 1)[:, None, :]
        # padding enters the training batch statistics as 0 (the centre), not as -100 dB outliers
        x = (self.logmel(waveform) - self.center_db) / self.scale_db * mask.to(waveform.dtype)
        x = self.norm(x)
        if self.spec_augment is not None:
            x = self.spec_augment(x, frames)
        return x * mask.to(x.dtype), frames

"""The mel scale and its triangular filterbank, in numpy (librosa's definitions, without librosa).

One filterbank for every mel front end in serkit: the ``librosa`` / ``logmel`` extractors
(:mod:`serkit.features.spectral`), the GE2E encoder's input (:func:`serkit.features.ge2e.mel_frames`)
and the networks' log-mel layer (:mod:`serkit.networks.logmel`). It equals
``librosa.filters.mel(sr=, n_fft=, n_mels=, fmin=, fmax=)`` — the Slaney mel scale (linear below
1 kHz, logarithmic above) with area-normalised triangles, float32 — to float32 rounding
(``tests/test_melscale.py`` checks it against librosa), so features are unchanged; importing it
costs nothing, where librosa and numba took seconds before the first clip.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError

__all__ = ["hz_to_mel", "mel_to_hz", "mel_filterbank"]

_F_SP = 200.0 / 3  # Hz per mel on the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0

_CACHE: dict = {}


def hz_to_mel(hz) -> np.ndarray:
    """Slaney mels of frequencies in Hz (as ``librosa.hz_to_mel(htk=False)``)."""
    f = np.asarray(hz, dtype=np.float64)
    mels = f / _F_SP
    log = f >= _MIN_LOG_HZ
    return np.where(log, _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP, mels)


def mel_to_hz(mels) -> np.ndarray:
    """Frequencies in Hz of Slaney mels (the inverse of :func:`hz_to_mel`)."""
    m = np.asarray(mels, dtype=np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOG_STEP * (m - _MIN_LOG_MEL)), _F_SP * m)


def mel_filterbank(
    sampling_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Mel filter weights [shape=(n_mels, n_fft // 2 + 1), float32] (``librosa.filters.mel``'s layout).

    Parameters
    ----------
    sampling_rate : int
        Hz.
    n_fft : int
        FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
    n_mels : int
        Bands.
    fmin, fmax : float
        Edges in Hz (``fmax=None``: Nyquist).

    Examples
    --------
    >>> w = mel_filterbank(16000, 400, 40)
    >>> w.shape, w.dtype.name
    ((40, 201), 'float32')
    """
    fmax = sampling_rate / 2.0 if fmax is None else float(fmax)
    if not (0.0 <= fmin < fmax <= sampling_rate / 2.0 + 1e-9) or n_mels < 1 or n_fft < 2:
        raise ConfigError(
            f"mel filterbank needs 0 <= fmin < fmax <= sampling_rate/2, n_mels >= 1 and n_fft >= 2; got "
            f"fmin={fmin}, fmax={fmax}, sampling_rate={sampling_rate}, n_mels={n_mels}, n_fft={n_fft}"
        )
    key = (int(sampling_rate), int(n_fft), int(n_mels), float(fmin), fmax)
    if key not in _CACHE:
        freqs = np.fft.rfftfreq(int(n_fft), 1.0 / sampling_rate)
        edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
        widths = np.diff(edges)
        ramps = edges[:, None] - freqs[None, :]
        lower = -ramps[:-2] / widths[:-1, None]
        upper = ramps[2:] / widths[1:, None]
        weights = np.maximum(0.0, np.minimum(lower, upper))
        weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]  # Slaney: equal area per band
        w = weights.astype(np.float32)
        w.setflags(write=False)
        _CACHE[key] = w
    return _CACHE[key]

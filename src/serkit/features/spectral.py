"""Frame-level speech descriptors with numpy/librosa, and the ``librosa`` and ``logmel`` extractors.

Every descriptor here shares one frame grid: frame ``t`` is centred on sample ``t * hop_length``
(the signal is zero-padded by half a frame at both ends, as ``librosa``'s ``center=True``), so a
signal of ``n`` samples has ``1 + n // hop_length`` frames and all LLD columns line up. The hop is
10 ms by default (160 samples at 16 kHz); spectra use 512-point frames (32 ms at 16 kHz) and a
Hann window. Unlike librosa, arrays are frames-first: ``[shape=(n_frames, ...)]``.

Voiced-only descriptors (F0, formants) are ``NaN`` in unvoiced frames; :mod:`.functionals` skips them.

>>> import numpy as np
>>> sr = 16000
>>> tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)
>>> hz, voiced = f0(tone, sr)
>>> round(float(np.nanmedian(hz)), 1), bool(voiced[10:-10].all())
(220.0, True)
"""

from __future__ import annotations

import numpy as np

from ..errors import AudioError, ConfigError
from ..melscale import mel_filterbank
from .base import FeatureExtractor, register_extractor
from .functionals import functional_names, functionals

__all__ = [
    "rms",
    "zcr",
    "f0",
    "formants",
    "stft_power",
    "mel_power",
    "log_mel",
    "mfcc",
    "deltas",
    "spectral_centroid",
    "LibrosaExtractor",
    "LogMelExtractor",
]

#: Analysis frame of every spectral descriptor (samples), as asked for by the SER literature: 512-point frames.
N_FFT = 512
#: Default hop (seconds): 10 ms, i.e. 100 frames per second.
HOP_SECONDS = 0.010
#: Default F0 search range (Hz): covers low male voices and high, aroused female speech.
F0_MIN, F0_MAX = 60.0, 600.0
#: YIN: first dip of the cumulative-mean-normalised difference below this is taken as the period.
YIN_TROUGH_THRESHOLD = 0.1
#: YIN voicing decision: a frame is voiced when its aperiodicity (CMNDF at the chosen period) is
#: below this and it is not silent (see :data:`SILENCE_DB`).
YIN_VOICING_THRESHOLD = 0.35
#: Frames quieter than this (dB below the loudest frame of the signal) are unvoiced whatever their
#: periodicity; so are frames below an absolute -70 dBFS (an all-silent clip has no voiced frame).
SILENCE_DB = 40.0
_ABS_SILENCE_RMS = 10 ** (-70 / 20)
#: LPC formant candidates wider than this (Hz) are not formants (spectral tilt, noise).
MAX_FORMANT_BANDWIDTH = 400.0
MIN_FORMANT_HZ = 90.0


_CONTROLLER = None


def _single_threaded():
    """Context limiting BLAS/LAPACK to one thread.

    The matrices here are tiny (a 2 s clip is a 201 x 257 spectrogram); a threaded OpenBLAS splits
    them anyway and its threads spin for a core, which doubled the CPU time of the ``librosa``
    extractor (and multiplied wall time on a busy 2-core machine). Parallelism belongs across
    files (:func:`serkit.features.extract`), not inside one. Entering costs ~10 us once the
    controller exists.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            from contextlib import nullcontext

            return nullcontext()
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


def _hop(sampling_rate: int, hop_length: int | None) -> int:
    hop = int(round(HOP_SECONDS * sampling_rate)) if hop_length is None else int(hop_length)
    if hop < 1:
        raise ConfigError(f"hop_length must be at least 1 sample, got {hop_length}")
    return hop


def _signal(signal) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(
            f"expected a mono signal [shape=(n_samples,)], got shape {x.shape}; mix down first (audio.read does)"
        )
    if x.size == 0:
        raise AudioError("the signal has no samples; there is nothing to analyse")
    if not np.all(np.isfinite(x)):
        raise AudioError("the signal contains NaN or infinite samples; check how it was produced")
    return x


#: Frames processed at once (10 s at a 10 ms hop): bounds memory on long recordings to tens of MB
#: of intermediates, while a block is still big enough for numpy to be efficient.
_BLOCK = 1024


def _n_frames(n_samples: int, hop: int) -> int:
    return 1 + n_samples // hop


def _frames(x: np.ndarray, frame_length: int, hop: int) -> np.ndarray:
    """Centred frames [shape=(n_frames, frame_length)] (a strided view of a zero-padded copy)."""
    n = _n_frames(len(x), hop)
    left = frame_length // 2
    need = (n - 1) * hop + frame_length
    padded = np.zeros(need, dtype=x.dtype)
    body = x[: max(0, need - left)]
    padded[left : left + len(body)] = body
    return np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop][:n]


def _per_frame(x: np.ndarray, frame_length: int, hop: int, fn) -> np.ndarray:
    """``fn(frames)`` -> [n] over centred frames, a block at a time (memory stays bounded)."""
    view = _frames(x, frame_length, hop)
    return np.concatenate([fn(view[k : k + _BLOCK]) for k in range(0, len(view), _BLOCK)])


def rms(
    signal: np.ndarray, sampling_rate: int = 16000, *, frame_length: int = N_FFT, hop_length: int | None = None
) -> np.ndarray:
    """Short-time energy as root-mean-square amplitude per frame.

    Parameters
    ----------
    signal : np.ndarray [shape=(n_samples,)]
    sampling_rate : int
        Hz; sets the default hop (10 ms).
    frame_length : int
        Samples per frame (512).
    hop_length : int, optional
        Samples between frames (default 10 ms).

    Returns
    -------
    np.ndarray [shape=(n_frames,), float64]
        RMS in signal units (full scale = 1); a sine of amplitude ``a`` gives ``a / sqrt(2)``.
    """
    x = _signal(signal)
    hop = _hop(sampling_rate, hop_length)

    def block(fr: np.ndarray) -> np.ndarray:
        fr = fr.astype(np.float64)
        return np.sqrt(np.einsum("ij,ij->i", fr, fr) / frame_length)

    return _per_frame(x, frame_length, hop, block)


def zcr(
    signal: np.ndarray, sampling_rate: int = 16000, *, frame_length: int = N_FFT, hop_length: int | None = None
) -> np.ndarray:
    """Zero-crossing rate: sign changes per sample pair in each frame.

    A sine of frequency ``f`` gives ``2 f / sampling_rate``; zero counts as positive, so digital
    silence gives 0.

    Returns
    -------
    np.ndarray [shape=(n_frames,), float64]
        Crossings per sample, in [0, 1].
    """
    x = _signal(signal)
    hop = _hop(sampling_rate, hop_length)

    def block(fr: np.ndarray) -> np.ndarray:
        neg = fr < 0
        # a frame of L samples holds L - 1 neighbouring pairs
        return np.count_nonzero(neg[:, 1:] != neg[:, :-1], axis=1) / (frame_length - 1)

    return _per_frame(x, frame_length, hop, block)


# --------------------------------------------------------------------------------------------- F0


def _yin(x: np.ndarray, sr: int, *, fmin: float, fmax: float, hop: int, win_length: int):
    """Vectorised YIN (de Cheveigné & Kawahara 2002): (f0 Hz, aperiodicity) per frame, no voicing yet."""
    tau_min = max(2, int(np.floor(sr / fmax)))
    tau_max = int(np.ceil(sr / fmin))
    frame_length = win_length + tau_max + 1
    view = _frames(x, frame_length, hop)  # [n, L], a view
    out = [
        _yin_block(view[k : k + _BLOCK].astype(np.float64), sr, tau_min=tau_min, tau_max=tau_max, win_length=win_length)
        for k in range(0, len(view), _BLOCK)
    ]
    return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def _fast_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: a size pocketfft transforms fast (720 for YIN's 669-sample
    frames, where the next power of two, 1024, took ~40 % longer)."""
    best = 1 << int(np.ceil(np.log2(n)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _yin_block(fr: np.ndarray, sr: int, *, tau_min: int, tau_max: int, win_length: int):
    frame_length = fr.shape[1]
    nfft = _fast_size(frame_length + 1)
    # r(tau) = sum_{j<W} x_j x_{j+tau} by FFT cross-correlation; no wrap-around since nfft > L
    # (the lags read, tau <= tau_max + 1, reach at most sample W + tau_max + 1 = L).
    spec_full = np.fft.rfft(fr, nfft, axis=1)
    spec_head = np.fft.rfft(fr[:, :win_length], nfft, axis=1)
    r = np.fft.irfft(np.conj(spec_head) * spec_full, nfft, axis=1)[:, : tau_max + 2]
    cs = np.concatenate([np.zeros((len(fr), 1)), np.cumsum(fr**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 2)
    energy_tau = cs[:, win_length : win_length + tau_max + 2] - cs[:, : tau_max + 2]  # slices, not a gather
    d = np.maximum(energy_tau[:, :1] + energy_tau - 2.0 * r, 0.0)  # difference function d(tau)
    # cumulative-mean-normalised difference d'(tau) = d(tau) * tau / sum_{k<=tau} d(k); d'(0) = 1
    csum = np.cumsum(d[:, 1:], axis=1)
    cmndf = np.ones_like(d)
    ok = csum > 1e-12 * np.maximum(energy_tau[:, :1], 1e-30)
    cmndf[:, 1:] = np.where(ok, d[:, 1:] * taus[1:] / np.where(ok, csum, 1.0), 1.0)

    seg = cmndf[:, tau_min : tau_max + 1]  # candidate periods
    # local minima (troughs) of d' over the search range, the first one under the threshold wins;
    # without one, the global minimum (the frame will then normally be judged unvoiced).
    prev = cmndf[:, tau_min - 1 : tau_max]
    nxt = cmndf[:, tau_min + 1 : tau_max + 2]
    trough = (seg <= prev) & (seg < nxt)
    below = trough & (seg < YIN_TROUGH_THRESHOLD)
    has_below = below.any(axis=1)
    seg_trough = np.where(trough, seg, np.inf)
    fallback = np.argmin(np.where(trough.any(axis=1)[:, None], seg_trough, seg), axis=1)
    best = np.where(has_below, np.argmax(below, axis=1), fallback)
    tau = best + tau_min
    rows = np.arange(len(fr))
    # parabolic interpolation of the trough: sub-sample period accuracy (integer lags alone err up to 1.5 Hz at 220 Hz)
    a, b, c = cmndf[rows, tau - 1], cmndf[rows, tau], cmndf[rows, tau + 1]
    den = a - 2.0 * b + c
    shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(np.abs(den) > 1e-12, den, 1.0), 0.0)
    shift = np.clip(shift, -1.0, 1.0)
    aperiodicity = np.clip(b - 0.25 * (a - c) * shift, 0.0, 1.0)
    return sr / (tau + shift), aperiodicity


def _pitch(
    x: np.ndarray,
    sr: int,
    *,
    method: str,
    fmin: float,
    fmax: float,
    hop: int,
    frame_rms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0 Hz with NaN when unvoiced, voiced flag, periodicity in [0, 1]) per frame."""
    if not 0 < fmin < fmax <= sr / 2:
        raise ConfigError(
            f"F0 range must satisfy 0 < fmin < fmax <= sampling_rate/2; got fmin={fmin}, fmax={fmax}, sr={sr}"
        )
    if method == "yin":
        # 25 ms integration window, but never shorter than 1.5 periods of fmin (YIN needs W >= period).
        win = max(int(round(0.025 * sr)), int(np.ceil(1.5 * sr / fmin)))
        hz, aperiodicity = _yin(x, sr, fmin=fmin, fmax=fmax, hop=hop, win_length=win)
        periodicity = 1.0 - aperiodicity
        voiced = aperiodicity < YIN_VOICING_THRESHOLD
        voiced &= (hz >= fmin * 0.97) & (hz <= fmax * 1.03)
    elif method == "pyin":
        import librosa

        frame_length = 1 << int(np.ceil(np.log2(2.2 * sr / fmin)))
        hz, voiced, prob = librosa.pyin(
            x, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop, center=True
        )
        n = _n_frames(len(x), hop)
        hz, voiced, periodicity = hz[:n], voiced[:n], prob[:n]
    else:
        raise ConfigError(f"unknown F0 method {method!r}; use 'yin' (fast, default) or 'pyin' (slower, probabilistic)")
    # Silence gate: a near-silent frame can look periodic (hum, dither); energy decides it is not voice.
    level = rms(x, sr, hop_length=hop) if frame_rms is None else frame_rms
    loud = (level > _ABS_SILENCE_RMS) & (level > level.max() * 10 ** (-SILENCE_DB / 20))
    voiced = np.asarray(voiced, dtype=bool) & loud
    hz = np.where(voiced, hz, np.nan)
    return hz, voiced, np.nan_to_num(np.asarray(periodicity, dtype=np.float64))


def f0(
    signal: np.ndarray,
    sampling_rate: int = 16000,
    *,
    method: str = "yin",
    fmin: float = F0_MIN,
    fmax: float = F0_MAX,
    hop_length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fundamental frequency per frame, and whether each frame is voiced.

    Parameters
    ----------
    signal : np.ndarray [shape=(n_samples,)]
    sampling_rate : int
        Hz.
    method : {"yin", "pyin"}
        ``"yin"`` (default): vectorised YIN with parabolic interpolation; a frame is voiced when its
        aperiodicity (the normalised difference at the chosen period) is below
        :data:`YIN_VOICING_THRESHOLD`, its F0 lies in range, and it is not silent (within
        :data:`SILENCE_DB` of the loudest frame, above -70 dBFS). About 2 ms of CPU per second of
        audio. On EmoDB its per-utterance median F0 matches openSMILE's ComParE ``F0final`` within
        a few per cent and its voicing ratio within about 0.1; it voices fewer frames than pYIN
        (which also voices ~6 % of white-noise frames).
        ``"pyin"``: ``librosa.pyin`` (probabilistic YIN + HMM smoothing): smoother voicing with
        fewer octave jumps, about 60x slower (~0.14 s of CPU per second of audio); the same
        silence gate applies.
    fmin, fmax : float
        Search range (Hz).
    hop_length : int, optional
        Samples between frames (default 10 ms).

    Returns
    -------
    f0_hz : np.ndarray [shape=(n_frames,), float64]
        Hz in voiced frames, ``NaN`` in unvoiced ones.
    voiced_flag : np.ndarray [shape=(n_frames,), bool]
    """
    x = _signal(signal)
    hz, voiced, _ = _pitch(x, sampling_rate, method=method, fmin=fmin, fmax=fmax, hop=_hop(sampling_rate, hop_length))
    return hz, voiced


# --------------------------------------------------------------------------------------- formants


def _lpc(frames: np.ndarray, order: int) -> np.ndarray:
    """LPC polynomials [shape=(n, order+1)], ``a[:, 0] = 1``: autocorrelation + Levinson-Durbin, all frames at once."""
    n, L = frames.shape
    nfft = 1 << int(np.ceil(np.log2(2 * L)))
    spec = np.fft.rfft(frames, nfft, axis=1)
    r = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, : order + 1]
    r[:, 0] *= 1.0 + 1e-9  # white-noise correction: keeps the recursion stable on near-singular frames
    r[:, 0] += 1e-12
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.einsum("nj,nj->n", a[:, 1:i], r[:, i - 1 : 0 : -1]) if i > 1 else r[:, i].copy()
        k = -acc / err
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * np.concatenate([a[:, i - 1 : 0 : -1], np.ones((n, 1))], axis=1)
        err = err * (1.0 - k**2)
        err = np.maximum(err, 1e-300)
    return a


def _formant_frames(frames: np.ndarray, sr: int, *, n_formants: int, order: int, max_bandwidth: float) -> np.ndarray:
    n = len(frames)
    out = np.full((n, n_formants), np.nan)
    if n == 0:
        return out
    a = _lpc(frames, order)
    # roots of each LPC polynomial = eigenvalues of its companion matrix (one batched LAPACK call)
    comp = np.zeros((n, order, order))
    comp[:, 0, :] = -a[:, 1:]
    comp[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    roots = np.linalg.eigvals(comp)  # [n, order]
    freq = np.angle(roots) * sr / (2 * np.pi)
    bw = -np.log(np.maximum(np.abs(roots), 1e-12)) * sr / np.pi
    good = (roots.imag > 0) & (freq > MIN_FORMANT_HZ) & (freq < sr / 2 - MIN_FORMANT_HZ) & (bw < max_bandwidth)
    cand = np.sort(np.where(good, freq, np.inf), axis=1)[:, :n_formants]
    out[:, : cand.shape[1]] = np.where(np.isfinite(cand), cand, np.nan)
    return out


def formants(
    signal: np.ndarray,
    sampling_rate: int = 16000,
    *,
    n_formants: int = 3,
    voiced: np.ndarray | None = None,
    order: int | None = None,
    max_bandwidth: float = MAX_FORMANT_BANDWIDTH,
    hop_length: int | None = None,
) -> np.ndarray:
    """Formant frequencies F1..Fn per frame by LPC root solving over voiced frames.

    Each voiced frame (25 ms, Hamming window, pre-emphasis from 50 Hz) gets an LPC model of order
    ``2 + sampling_rate // 1000``; the complex roots above the real axis become candidate
    resonances at ``angle * sr / 2pi`` Hz with bandwidth ``-ln|root| * sr / pi`` Hz. Candidates
    below 90 Hz, near Nyquist or wider than ``max_bandwidth`` are dropped; the lowest ``n_formants``
    remaining ones are F1, F2, ...

    Parameters
    ----------
    signal : np.ndarray [shape=(n_samples,)]
    sampling_rate : int
        Hz.
    n_formants : int
        How many formants (3).
    voiced : np.ndarray [shape=(n_frames,), bool], optional
        Which frames to analyse; by default the voicing of :func:`f0` (YIN).
    order : int, optional
        LPC order (default ``2 + sampling_rate // 1000``).
    max_bandwidth : float
        Hz (400).
    hop_length : int, optional
        Samples between frames (default 10 ms).

    Returns
    -------
    np.ndarray [shape=(n_frames, n_formants), float64]
        Hz; ``NaN`` in unvoiced frames and where fewer resonances were found.
    """
    x = _signal(signal)
    hop = _hop(sampling_rate, hop_length)
    n = _n_frames(len(x), hop)
    if voiced is None:
        _, voiced = f0(x, sampling_rate, hop_length=hop)
    voiced = np.asarray(voiced, dtype=bool)
    if voiced.shape != (n,):
        raise ConfigError(f"voiced must have one flag per frame ({n}), got shape {voiced.shape}")
    with _single_threaded():
        return _formants_of(
            x, sampling_rate, voiced, hop=hop, n_formants=n_formants, order=order, max_bandwidth=max_bandwidth
        )


def _formants_of(x, sr, voiced, *, hop, n_formants, order, max_bandwidth) -> np.ndarray:
    n = len(voiced)
    order = int(order or 2 + sr // 1000)
    win = int(round(0.025 * sr))
    # pre-emphasis (as Praat, from 50 Hz) flattens the glottal -6 dB/octave tilt so LPC poles sit on
    # formants; applied per frame (frames one sample longer) to avoid a float64 copy of a long signal
    alpha = np.exp(-2 * np.pi * 50.0 / sr)
    idx = np.flatnonzero(voiced)
    out = np.full((n, n_formants), np.nan)
    if idx.size:
        view, window = _frames(x, win + 1, hop), np.hamming(win)
        for k in range(0, idx.size, _BLOCK):
            fr = view[idx[k : k + _BLOCK]].astype(np.float64)
            fr = (fr[:, 1:] - alpha * fr[:, :-1]) * window
            out[idx[k : k + _BLOCK]] = _formant_frames(
                fr, sr, n_formants=n_formants, order=order, max_bandwidth=max_bandwidth
            )
    return out


# ---------------------------------------------------------------------------------------- spectra


def stft_power(
    signal: np.ndarray, sampling_rate: int = 16000, *, n_fft: int = N_FFT, hop_length: int | None = None
) -> np.ndarray:
    """Power spectrogram ``|STFT|^2`` [shape=(n_frames, n_fft // 2 + 1)] (Hann window, centred frames)."""
    x = _signal(signal)
    hop = _hop(sampling_rate, hop_length)
    return _power(x, n_fft, hop)


def _power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    view = _frames(x, n_fft, hop)
    out = np.empty((len(view), n_fft // 2 + 1))
    for k in range(0, len(view), _BLOCK):
        out[k : k + _BLOCK] = _spectrum(view[k : k + _BLOCK])
    return out


def _spectrum(frames: np.ndarray) -> np.ndarray:
    """Power spectra of frames [n, n_fft] under a periodic Hann window (as librosa)."""
    n_fft = frames.shape[1]
    spec = np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1].astype(np.float32), axis=1)
    return spec.real**2 + spec.imag**2


def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """[bins, mels] float32 (:func:`serkit.melscale.mel_filterbank`, librosa's Slaney filterbank, transposed)."""
    return mel_filterbank(sr, n_fft, n_mels, fmin, fmax).T


def mel_power(
    signal: np.ndarray,
    sampling_rate: int = 16000,
    *,
    n_mels: int = 64,
    n_fft: int = N_FFT,
    hop_length: int | None = None,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Mel-band power [shape=(n_frames, n_mels)] (librosa's Slaney mel filterbank)."""
    x = _signal(signal)
    with _single_threaded():
        return _power(x, n_fft, _hop(sampling_rate, hop_length)) @ _mel_basis(sampling_rate, n_fft, n_mels, fmin, fmax)


def _to_db(power: np.ndarray, top_db: float | None) -> np.ndarray:
    return _clip_db(10.0 * np.log10(np.maximum(power, 1e-10)), top_db)


def _clip_db(db: np.ndarray, top_db: float | None) -> np.ndarray:
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db


def log_mel(
    signal: np.ndarray,
    sampling_rate: int = 16000,
    *,
    n_mels: int = 64,
    n_fft: int = N_FFT,
    hop_length: int | None = None,
    fmin: float = 0.0,
    fmax: float | None = None,
    top_db: float | None = 80.0,
) -> np.ndarray:
    """Log-mel spectrogram in dB [shape=(n_frames, n_mels)].

    ``10 log10(mel power)`` relative to full scale (not to the loudest frame, so loudness, an
    arousal cue, is kept), floored at -100 dB and at ``top_db`` below the signal's maximum, as
    ``librosa.power_to_db``. Defaults: 64 bands, 512-point frames, 10 ms hop.
    """
    power = mel_power(signal, sampling_rate, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length, fmin=fmin, fmax=fmax)
    return _to_db(power, top_db)


_DCT_CACHE: dict = {}


def _dct_mfcc(logmel_db: np.ndarray, n_mfcc: int) -> np.ndarray:
    """The first ``n_mfcc`` coefficients of the orthonormal DCT-II along bands (``scipy.fft.dct(type=2,
    norm="ortho")``, as librosa's MFCC), as a matrix product: 13 x 64 is cheaper than importing scipy."""
    n = logmel_db.shape[1]
    key = (n, n_mfcc)
    if key not in _DCT_CACHE:
        k = np.arange(min(n_mfcc, n))[:, None]
        basis = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n)) * np.sqrt(2.0 / n)
        basis[0] /= np.sqrt(2.0)
        _DCT_CACHE[key] = basis.T  # [bands, n_mfcc]
    return logmel_db @ _DCT_CACHE[key]


def mfcc(
    signal: np.ndarray,
    sampling_rate: int = 16000,
    *,
    n_mfcc: int = 13,
    n_mels: int = 64,
    n_fft: int = N_FFT,
    hop_length: int | None = None,
) -> np.ndarray:
    """Mel-frequency cepstral coefficients [shape=(n_frames, n_mfcc)].

    The orthonormal DCT-II of :func:`log_mel` (as ``librosa.feature.mfcc``); column 0 is the
    (scaled) log energy, columns 1.. the spectral shape.
    """
    return _dct_mfcc(log_mel(signal, sampling_rate, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length), n_mfcc)


def deltas(features: np.ndarray, *, width: int = 9) -> np.ndarray:
    """Regression deltas along frames (HTK formula, ``width`` frames, edges repeated).

    ``d_t = sum_{k=1..N} k (c_{t+k} - c_{t-k}) / (2 sum k^2)`` with ``N = width // 2``; works for any
    number of frames, even 1.

    Parameters
    ----------
    features : np.ndarray [shape=(n_frames, n_features)]

    Returns
    -------
    np.ndarray [shape=(n_frames, n_features)]
        Per frame (multiply by the frame rate for per-second units).
    """
    c = np.asarray(features, dtype=np.float64)
    N = max(1, width // 2)
    n = len(c)
    padded = np.concatenate([np.repeat(c[:1], N, axis=0), c, np.repeat(c[-1:], N, axis=0)], axis=0)
    out = np.zeros_like(c)
    for k in range(1, N + 1):
        out += k * (padded[N + k : N + k + n] - padded[N - k : N - k + n])
    return out / (2 * sum(k * k for k in range(1, N + 1)))


def spectral_centroid(
    signal: np.ndarray, sampling_rate: int = 16000, *, n_fft: int = N_FFT, hop_length: int | None = None
) -> np.ndarray:
    """Magnitude-weighted mean frequency per frame [shape=(n_frames,)], Hz (0 for a silent frame)."""
    x = _signal(signal)
    mag = np.sqrt(_power(x, n_fft, _hop(sampling_rate, hop_length)))
    return _spectral_shape(mag, sampling_rate, n_fft)[:, 0]


def _spectral_shape(mag: np.ndarray, sr: int, n_fft: int, *, roll_percent: float = 0.85) -> np.ndarray:
    """[n, 4]: centroid (Hz), bandwidth (Hz), roll-off (Hz), flatness (0..1) of magnitude spectra [n, bins]."""
    freqs = np.arange(mag.shape[1]) * sr / n_fft
    total = mag.sum(axis=1)
    silent = total <= 1e-10
    w = mag / np.where(silent, 1.0, total)[:, None]
    centroid = w @ freqs
    bandwidth = np.sqrt(np.maximum(w @ freqs**2 - centroid**2, 0.0))  # 2nd central moment, as librosa (p=2)
    cum = np.cumsum(mag, axis=1)
    rolloff = freqs[np.minimum(np.argmax(cum >= roll_percent * total[:, None], axis=1), len(freqs) - 1)]
    power = np.maximum(mag**2, 1e-10)  # librosa's flatness: of the power spectrum, floored at 1e-10
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    shape = np.stack([centroid, bandwidth, rolloff, flatness], axis=1)
    shape[silent, :3] = 0.0
    return shape


def _contrast_bands(sr: int, fmin: float = 200.0) -> int:
    """Octave bands from ``fmin`` that fit below Nyquist (5 at 16 kHz); librosa rejects more."""
    return max(1, int(np.floor(np.log2((sr / 2) / fmin))))


def _contrast(mag: np.ndarray, sr: int, n_fft: int, *, fmin: float = 200.0, quantile: float = 0.02) -> np.ndarray:
    """Octave-band spectral contrast in dB (peak minus valley) [n, n_bands + 1] of magnitude frames
    [n, bins]: ``librosa.feature.spectral_contrast(S=mag.T, ...)``'s definition in numpy (equal to
    float rounding, ``tests/test_spectral.py``). Bands are octaves from ``fmin`` (the first from 0 Hz,
    the last to Nyquist), each taking its edge bin below; peak and valley are the means of the
    band's top and bottom ``quantile`` of bins (at least one); both go through ``power_to_db``
    (``amin`` 1e-10, 80 dB below the block's largest peak or valley)."""
    n_bands = _contrast_bands(sr, fmin)
    freq = np.fft.rfftfreq(n_fft, 1.0 / sr)
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * 2.0 ** np.arange(n_bands + 1)
    valley = np.zeros((len(mag), n_bands + 1))
    peak = np.zeros_like(valley)
    for k, (lo, hi) in enumerate(zip(octa[:-1], octa[1:])):
        band = (freq >= lo) & (freq <= hi)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1 :] = True
        sub = mag[:, band]
        if k < n_bands:
            sub = sub[:, :-1]
        q = max(int(np.rint(quantile * np.sum(band))), 1)
        ordered = np.sort(sub, axis=1)
        valley[:, k] = ordered[:, :q].mean(axis=1)
        peak[:, k] = ordered[:, -q:].mean(axis=1)
    return _power_db(peak) - _power_db(valley)


def _power_db(s: np.ndarray, top_db: float = 80.0) -> np.ndarray:
    """``librosa.power_to_db(s)`` (ref 1, amin 1e-10, ``top_db`` below the array's maximum)."""
    db = 10.0 * np.log10(np.maximum(s, 1e-10))
    return np.maximum(db, db.max() - top_db)


# ------------------------------------------------------------------------------------- extractors


@register_extractor("librosa")
class LibrosaExtractor(FeatureExtractor):
    """Classic hand-crafted SER features: energy, ZCR, MFCC (+ deltas), spectral shape, F0, formants, log-mel.

    Frame LLDs (10 ms hop, 512-point frames): ``rms``, ``zcr``, ``mfcc_1``..``mfcc_13`` (+ ``_d``
    deltas and ``_dd`` delta-deltas per ``deltas``), ``spectral_centroid``, ``spectral_bandwidth``,
    ``spectral_rolloff`` (85 %), ``spectral_flatness``, ``spectral_contrast_1``..``_N`` (octave bands
    from 200 Hz, 6 at 16 kHz), ``f0`` (Hz, NaN when unvoiced), ``periodicity`` (1 - YIN aperiodicity,
    or pYIN's voiced probability), ``F1``..``F3`` (Hz, NaN when unvoiced), ``logmel_1``..``logmel_64`` (dB).

    Functionals (:mod:`.functionals`): the 14 :data:`~serkit.features.functionals.STATS` of every
    LLD except the log-mel bands, which get mean and std only, plus ``voicing_ratio``. With the
    defaults that is 56 x 14 + 64 x 2 + 1 = 913 features.

    Parameters
    ----------
    sampling_rate : int
        Hz (16000).
    n_mfcc : int
        MFCCs (13).
    deltas : {0, 1, 2}
        0: MFCCs only; 1: + deltas; 2: + delta-deltas (default).
    n_mels : int
        Log-mel bands (64).
    n_fft : int
        Spectral frame length in samples (512).
    hop_length : int, optional
        Samples (default 10 ms).
    f0 : {"yin", "pyin"}
        F0 tracker; ``"yin"`` (default) extracts EmoDB's 535 files in seconds, ``"pyin"`` is about
        100x slower for the F0 part (see :func:`f0`).
    fmin, fmax : float
        F0 search range (Hz).
    n_formants : int
        Formants (3).
    """

    sampling_rate = 16000

    #: bump when the computation changes, so that cached features of the old code are not reused
    #: (it is part of :meth:`full_config`, the cache key)
    VERSION = 1

    def __init__(
        self,
        *,
        sampling_rate: int = 16000,
        n_mfcc: int = 13,
        deltas: int = 2,
        n_mels: int = 64,
        n_fft: int = N_FFT,
        hop_length: int | None = None,
        f0: str = "yin",
        fmin: float = F0_MIN,
        fmax: float = F0_MAX,
        n_formants: int = 3,
    ):
        self.sampling_rate = sampling_rate
        self.n_mfcc = n_mfcc
        self.deltas = deltas
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.f0 = f0
        self.fmin = fmin
        self.fmax = fmax
        self.n_formants = n_formants

    def _check(self) -> None:
        if self.deltas not in (0, 1, 2):
            raise ConfigError(f"deltas must be 0, 1 or 2 (MFCC derivatives to add), got {self.deltas!r}")
        if self.f0 not in ("yin", "pyin"):
            raise ConfigError(f"unknown F0 method {self.f0!r}; use 'yin' (fast, default) or 'pyin' (slower)")

    @property
    def frame_rate(self) -> float:
        """LLD frames per second."""
        return self.sampling_rate / _hop(self.sampling_rate, self.hop_length)

    def _n_contrast(self) -> int:
        return _contrast_bands(self.sampling_rate) + 1

    def _scalar_names(self) -> list[str]:
        names = ["rms", "zcr"]
        base = [f"mfcc_{i + 1}" for i in range(self.n_mfcc)]
        names += base
        if self.deltas >= 1:
            names += [f"{m}_d" for m in base]
        if self.deltas >= 2:
            names += [f"{m}_dd" for m in base]
        names += ["spectral_centroid", "spectral_bandwidth", "spectral_rolloff", "spectral_flatness"]
        names += [f"spectral_contrast_{i + 1}" for i in range(self._n_contrast())]
        names += ["f0", "periodicity"] + [f"F{i + 1}" for i in range(self.n_formants)]
        return names

    def _mel_names(self) -> list[str]:
        return [f"logmel_{i + 1}" for i in range(self.n_mels)]

    def lld_names(self) -> list[str]:
        """Column names of :meth:`lld`."""
        self._check()
        return self._scalar_names() + self._mel_names()

    def lld(self, signal: np.ndarray) -> np.ndarray:
        """Frame-level descriptors [shape=(n_frames, n_llds), float64], columns as :meth:`lld_names`.

        ``f0`` and ``F1``.. are ``NaN`` in unvoiced frames (``np.nan_to_num`` them for a model that
        needs zeros); every other column is finite.
        """
        self._check()
        with _single_threaded():
            return self._lld(_signal(signal))

    def _lld(self, x: np.ndarray) -> np.ndarray:
        sr, hop = self.sampling_rate, _hop(self.sampling_rate, self.hop_length)
        level = rms(x, sr, frame_length=self.n_fft, hop_length=hop)
        rate = zcr(x, sr, frame_length=self.n_fft, hop_length=hop)
        # spectral descriptors are frame-local: compute them block by block so that a long
        # recording never holds more than one block of spectra (10 min would otherwise take ~1 GB)
        view = _frames(x, self.n_fft, hop)
        n = len(view)
        basis = _mel_basis(sr, self.n_fft, self.n_mels, 0.0, None)
        lm = np.empty((n, self.n_mels))
        shape = np.empty((n, 4))
        contrast = np.empty((n, self._n_contrast()))
        for k in range(0, n, _BLOCK):
            power = _spectrum(view[k : k + _BLOCK])
            lm[k : k + _BLOCK] = _to_db(power @ basis, None)
            mag = np.sqrt(power)
            shape[k : k + _BLOCK] = _spectral_shape(mag, sr, self.n_fft)
            contrast[k : k + _BLOCK] = _contrast(mag, sr, self.n_fft)
        lm = _clip_db(lm, 80.0)
        cols = [level[:, None], rate[:, None]]
        cc = _dct_mfcc(lm, self.n_mfcc)
        cols.append(cc)
        if self.deltas >= 1:
            d1 = deltas(cc)
            cols.append(d1)
            if self.deltas >= 2:
                cols.append(deltas(d1))
        cols += [shape, contrast]
        hz, voiced, periodicity = _pitch(
            x, sr, method=self.f0, fmin=self.fmin, fmax=self.fmax, hop=hop, frame_rms=level
        )
        cols += [hz[:, None], periodicity[:, None]]
        if self.n_formants:  # LPC root finding is ~40 % of this extractor's time: skipped when not asked for
            cols.append(
                _formants_of(
                    x, sr, voiced, hop=hop, n_formants=self.n_formants, order=None, max_bandwidth=MAX_FORMANT_BANDWIDTH
                )
            )
        cols.append(lm)
        return np.concatenate(cols, axis=1)

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """[shape=(n_features,), float32]; names in :meth:`feature_names`."""
        lld = self.lld(signal)
        k = len(self._scalar_names())
        v1, _ = functionals(lld[:, :k], self._scalar_names(), frame_rate=self.frame_rate)
        v2, _ = functionals(lld[:, k:], self._mel_names(), frame_rate=self.frame_rate, stats=("mean", "std"))
        # voicing_ratio (last of v1) goes last overall, after the log-mel summary
        return np.concatenate([v1[:-1], v2, v1[-1:]]).astype(np.float32)

    def feature_names(self) -> list[str]:
        self._check()
        n1 = functional_names(self._scalar_names())
        return n1[:-1] + functional_names(self._mel_names(), stats=("mean", "std")) + n1[-1:]


@register_extractor("logmel")
class LogMelExtractor(FeatureExtractor):
    """64-band log-mel spectrogram frames (for CNN/LSTM models); functionals are mean and std per band.

    Parameters
    ----------
    sampling_rate : int
        Hz (16000).
    n_mels : int
        Bands (64).
    n_fft : int
        Frame length in samples (512).
    hop_length : int, optional
        Samples (default 10 ms).
    fmin, fmax : float
        Filterbank range (Hz; default 0 to Nyquist).
    top_db : float, optional
        Dynamic range kept below the signal's maximum (80 dB); ``None`` keeps all (floor -100 dB).
    """

    sampling_rate = 16000
    VERSION = 1

    def __init__(
        self,
        *,
        sampling_rate: int = 16000,
        n_mels: int = 64,
        n_fft: int = N_FFT,
        hop_length: int | None = None,
        fmin: float = 0.0,
        fmax: float | None = None,
        top_db: float | None = 80.0,
    ):
        self.sampling_rate = sampling_rate
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.fmin = fmin
        self.fmax = fmax
        self.top_db = top_db

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sampling_rate / _hop(self.sampling_rate, self.hop_length)

    def lld_names(self) -> list[str]:
        return [f"logmel_{i + 1}" for i in range(self.n_mels)]

    def lld(self, signal: np.ndarray) -> np.ndarray:
        """Log-mel frames [shape=(n_frames, n_mels), float64], dB."""
        return log_mel(
            signal,
            self.sampling_rate,
            n_mels=self.n_mels,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            fmin=self.fmin,
            fmax=self.fmax,
            top_db=self.top_db,
        )

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        v, _ = functionals(self.lld(signal), self.lld_names(), frame_rate=self.frame_rate, stats=("mean", "std"))
        return v.astype(np.float32)

    def feature_names(self) -> list[str]:
        return functional_names(self.lld_names(), stats=("mean", "std"))

"""Channel conditions: what a telephone line, a low-bitrate codec, background noise or a level change do to speech.

Each condition takes a float32 mono ``signal`` ``[shape=(n,)]`` at ``sampling_rate`` Hz and a
:class:`numpy.random.Generator` and returns a float32 signal of the same length and rate; the
random choices (which companding law, which bitrate, which SNR, which gain) come from the
generator only, so the same seed gives the same output. :func:`apply` looks a condition up by
name (:data:`CONDITIONS`; an unknown name lists the valid ones).

- ``telephone`` — resample to 8 kHz, 300–3400 Hz band-pass (4th-order Butterworth), μ-law or
  A-law companding round trip (the law drawn; G.711's continuous curves, μ = 255 and A = 87.6,
  quantised to 8 bits rather than its segmented tables), back to the input rate. Nothing above
  4 kHz survives (the 8 kHz resampler's anti-alias filter).
- ``codec`` — a real encode/decode round trip through libsndfile (``soundfile``): Ogg Opus or
  MPEG Layer III (MP3, average bitrate) — drawn among those this libsndfile writes
  (:func:`available_codecs`) — at 16–32 kbit/s drawn. Encoded at 16 kHz (the signal is
  resampled there and back when its rate differs). libsndfile's ``compression_level`` sets the
  bitrate: for Opus the bitrate is ``6 + 250 (1 - level)`` kbit/s, for MP3 at 16 kHz (MPEG-2,
  8–160 kbit/s) ``8 + 152 (1 - level)`` kbit/s (measured on a 2-s EmoDB clip, container included:
  16 kbit/s asked gives 19–20, 32 gives 34–39).
- ``noise`` — additive noise at 5–15 dB SNR (drawn; mean-square powers): white, pink (1/f) or
  brown (1/f²) noise generated here, or babble (3–5 other clips summed) when ``babble`` signals are
  given. The result is scaled back (not clipped) when it would exceed full scale, which keeps the SNR.
- ``level`` — a gain of −10…+10 dB (drawn), clipped to [−1, 1].

The noise helpers (:func:`white_noise`, :func:`pink_noise`, :func:`add_noise`, :func:`gain`,
:func:`snr_db`) live here, below the feature extractors that use the conditions;
:mod:`serkit.training.augment` re-exports them for the networks' augmenter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ._registry import Registry
from .errors import AudioError, ConfigError

__all__ = [
    "CONDITIONS",
    "apply",
    "condition_names",
    "telephone",
    "codec",
    "noise",
    "level",
    "available_codecs",
    "encode_decode",
    "mu_law",
    "a_law",
    "snr_db",
    "white_noise",
    "pink_noise",
    "brown_noise",
    "add_noise",
    "gain",
    "BITRATE_KBPS",
    "SNR_DB",
    "LEVEL_DB",
]

#: the ranges drawn from when a condition's option is not given
BITRATE_KBPS = (16.0, 32.0)
SNR_DB = (5.0, 15.0)
LEVEL_DB = (-10.0, 10.0)
LAWS = ("mu", "a")
CODECS = ("opus", "mp3")
NOISE_KINDS = ("white", "pink", "brown", "babble")
#: the rate the codecs run at (both support it; the corpora and the models use it)
CODEC_RATE = 16000

CONDITIONS: Registry[Callable[..., np.ndarray]] = Registry("channel condition")


def condition_names() -> list[str]:
    """The registered condition names, e.g. ``['codec', 'level', 'noise', 'telephone']``."""
    return CONDITIONS.names()


def apply(name: str, signal: np.ndarray, sampling_rate: int, *, seed: int = 0, rng=None, **options):
    """``signal`` through condition ``name`` (a :data:`CONDITIONS` name), with ``rng`` or a generator
    seeded by ``seed`` (0 unless given: the same call gives the same output).

    >>> x = np.zeros(1600, np.float32)
    >>> apply("level", x, 16000, seed=0).shape
    (1600,)
    """
    fn = CONDITIONS.get(name)
    if rng is None:
        rng = np.random.default_rng(seed)
    return fn(_mono(signal), int(sampling_rate), rng, **options)


def _mono(signal) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim != 1:
        raise AudioError(
            f"a channel condition takes a mono signal [shape=(n,)], got shape {x.shape}; mix it down first"
        )
    return x


def parse_range(value, what: str) -> tuple[float, float]:
    """``value`` as a checked ``(low, high)`` pair of numbers (also :mod:`serkit.training.augment`'s ranges)."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number or a (low, high) pair, got {value!r}") from None
    if lo > hi:
        raise ConfigError(f"{what} range ({lo}, {hi}) has low > high")
    return lo, hi


def _draw(value, default: tuple[float, float], rng: np.random.Generator, what: str) -> float:
    """``value`` as given (a number), or drawn uniformly from ``value``/``default`` as a (low, high) range."""
    if value is None:
        value = default
    if isinstance(value, (int, float)):
        return float(value)
    return float(rng.uniform(*parse_range(value, what)))


def _choose(value, allowed: Sequence[str], rng: np.random.Generator, what: str) -> str:
    if value is None:
        return allowed[int(rng.integers(len(allowed)))]
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")
    return value


def _resample(x: np.ndarray, orig: int, target: int) -> np.ndarray:
    from .audio import resample

    return resample(x, orig, target)


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


# -- noise helpers (shared with serkit.training.augment) ------------------------------------------
def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """Signal-to-noise ratio ``10 log10(P_signal / P_noise)`` in dB (mean-square powers)."""
    pn = _power(np.asarray(noise))
    return math.inf if pn == 0 else 10.0 * math.log10(_power(np.asarray(signal)) / pn)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """[shape=(n,), float32] Gaussian white noise of unit variance."""
    return rng.standard_normal(n).astype(np.float32)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """[shape=(n,), float32] noise with power ∝ 1/f**exponent, unit variance, shaped in the frequency domain."""
    if n < 2:
        return white_noise(n, rng)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0  # keep DC finite; its amplitude is that of the lowest bin
    noise = np.fft.irfft(spec / f ** (exponent / 2.0), n)
    noise -= noise.mean()
    sd = noise.std()
    return (noise / sd if sd > 0 else noise).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """[shape=(n,), float32] pink (1/f power) noise of unit variance, shaped in the frequency domain."""
    return _coloured(n, rng, 1.0)


def brown_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """[shape=(n,), float32] brown (1/f² power) noise of unit variance: a low rumble (traffic, ventilation)."""
    return _coloured(n, rng, 2.0)


def add_noise(signal: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """Add ``noise`` scaled so that the signal-to-noise ratio is exactly ``snr`` dB.

    Parameters
    ----------
    signal
        [shape=(n,)] clean signal.
    noise
        [shape=(n,)] noise of any level (it is rescaled); must not be silent.
    snr
        Target SNR in dB.

    Returns
    -------
    np.ndarray [shape=(n,), float32]
        ``signal + k * noise``; a silent signal comes back unchanged (no SNR can be defined).
    """
    signal = np.asarray(signal, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if noise.shape != signal.shape:
        raise AudioError(f"noise has {noise.shape[0]} samples but the signal {signal.shape[0]}; cut or tile it first")
    ps, pn = _power(signal), _power(noise)
    if ps == 0:
        return signal.copy()
    if pn == 0:
        raise AudioError("the noise is silent; cannot reach an SNR with it (check the noise files)")
    k = math.sqrt(ps / (pn * 10.0 ** (snr / 10.0)))
    return (signal + np.float32(k) * noise).astype(np.float32)


def gain(signal: np.ndarray, db: float) -> np.ndarray:
    """Multiply by ``10 ** (db / 20)``."""
    return (np.asarray(signal, dtype=np.float32) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def _babble(n: int, clips: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """[shape=(n,)] 3–5 of ``clips`` (fewer when fewer are given), each looped, cut at a random
    offset and scaled to unit power, summed: several talkers at once."""
    usable = [np.asarray(c, np.float32).reshape(-1) for c in clips]
    usable = [c for c in usable if c.size and _power(c) > 0]
    if not usable:
        raise AudioError("babble noise needs at least one non-silent clip; pass babble=[other clips]")
    k = min(len(usable), int(rng.integers(3, 6)))
    out = np.zeros(n, np.float64)
    for i in rng.choice(len(usable), size=k, replace=False):
        c = usable[int(i)]
        if len(c) < n:
            c = np.tile(c, n // len(c) + 1)
        start = int(rng.integers(0, len(c) - n + 1))
        part = c[start : start + n].astype(np.float64)
        out += part / math.sqrt(max(_power(part), 1e-12))
    return out.astype(np.float32)


# -- companding ------------------------------------------------------------------------------------
def _quantise8(y: np.ndarray) -> np.ndarray:
    """Compressed values in [-1, 1] onto the 256 levels of an 8-bit code (and back to [-1, 1])."""
    return (np.round((np.clip(y, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0).astype(np.float64)


def mu_law(signal: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """8-bit μ-law (G.711's curve, North America and Japan) encode/decode round trip of a signal in [-1, 1].

    >>> t = np.arange(8000) / 8000
    >>> x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    >>> bool(snr_db(x, mu_law(x) - x) > 30)
    True
    """
    x = np.clip(np.asarray(signal, dtype=np.float64), -1.0, 1.0)
    y = _quantise8(np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu))
    return (np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu).astype(np.float32)


def a_law(signal: np.ndarray, a: float = 87.6) -> np.ndarray:
    """8-bit A-law (G.711's curve, Europe and most of the world) encode/decode round trip of a signal in [-1, 1]."""
    x = np.clip(np.asarray(signal, dtype=np.float64), -1.0, 1.0)
    ax = np.abs(x)
    la = 1.0 + math.log(a)
    small = ax < 1.0 / a
    y = np.where(small, a * ax / la, (1.0 + np.log(np.maximum(a * ax, 1e-300))) / la)
    y = _quantise8(np.sign(x) * y)
    ay = np.abs(y)
    dec = np.where(ay < 1.0 / la, ay * la / a, np.exp(ay * la - 1.0) / a)
    return (np.sign(y) * dec).astype(np.float32)


# -- the conditions --------------------------------------------------------------------------------
@CONDITIONS.register("telephone")
def telephone(signal, sampling_rate: int, rng: np.random.Generator, *, law: str | None = None) -> np.ndarray:
    """A narrowband telephone line: 8 kHz, 300–3400 Hz, 8-bit μ-law or A-law (``law``: ``"mu"``, ``"a"``, drawn when None)."""
    from scipy.signal import butter, sosfilt

    x = _mono(signal)
    law = _choose(law, LAWS, rng, "companding law")
    if not x.size:
        return x.copy()
    narrow = _resample(x, sampling_rate, 8000).astype(np.float64)
    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=8000, output="sos")
    narrow = sosfilt(sos, narrow)
    narrow = (mu_law if law == "mu" else a_law)(narrow)
    return _fit_length(_resample(narrow, 8000, sampling_rate), len(x))


def available_codecs() -> tuple[str, ...]:
    """The codecs of :data:`CODECS` this libsndfile can write (some Linux builds have no MPEG)."""
    import soundfile as sf

    formats = sf.available_formats()
    have = {"opus": "OGG" in formats and "OPUS" in sf.available_subtypes("OGG"), "mp3": "MP3" in formats}
    out = tuple(c for c in CODECS if have[c])
    if not out:
        raise AudioError(
            f"this libsndfile ({sf.__libsndfile_version__}) writes neither Ogg Opus nor MP3; "
            "install the soundfile wheel (libsndfile>=1.1 with Opus and MPEG)"
        )
    return out


def _codec_level(kind: str, kbps: float) -> float:
    """libsndfile's ``compression_level`` for ``kbps`` (the linear maps of its Opus and 16 kHz MP3 encoders)."""
    level = 1.0 - (kbps - 6.0) / 250.0 if kind == "opus" else 1.0 - (kbps - 8.0) / 152.0
    return float(np.clip(level, 0.0, 0.99))


def encode_decode(signal: np.ndarray, kind: str, kbps: float) -> tuple[np.ndarray, int]:
    """One ``kind`` (``"opus"``, ``"mp3"``) round trip of a 16 kHz ``signal`` at about ``kbps``; returns
    the decoded signal (its own length) and the encoded size in bytes."""
    import io

    import soundfile as sf

    fmt, subtype = ("OGG", "OPUS") if kind == "opus" else ("MP3", "MPEG_LAYER_III")
    options = {"compression_level": _codec_level(kind, kbps)}
    if kind == "mp3":
        options["bitrate_mode"] = "AVERAGE"  # constant-bitrate MP3 decodes with a 1105-sample delay here
    buf = io.BytesIO()
    try:
        sf.write(buf, np.clip(signal, -1.0, 1.0), CODEC_RATE, format=fmt, subtype=subtype, **options)
    except (sf.LibsndfileError, TypeError, ValueError, RuntimeError) as exc:
        raise AudioError(
            f"this libsndfile ({sf.__libsndfile_version__}) cannot write {kind} ({exc}); "
            "install soundfile>=0.13 (compression_level) with libsndfile>=1.1 (its wheels have Opus and MP3)"
        ) from None
    size = len(buf.getvalue())
    buf.seek(0)
    decoded, _ = sf.read(buf, dtype="float32")
    return (decoded if decoded.ndim == 1 else decoded.mean(axis=1)).astype(np.float32), size


@CONDITIONS.register("codec")
def codec(signal, sampling_rate: int, rng: np.random.Generator, *, kind: str | None = None, kbps=None) -> np.ndarray:
    """A lossy codec round trip: ``kind`` ``"opus"`` or ``"mp3"`` (drawn when None) at ``kbps`` kbit/s (drawn from 16–32)."""
    x = _mono(signal)
    kind = _choose(kind, CODECS, rng, "codec") if kind is not None else _choose(None, available_codecs(), rng, "codec")
    rate = _draw(kbps, BITRATE_KBPS, rng, "codec bitrate (kbit/s)")
    if not 6.0 <= rate <= 128.0:
        raise ConfigError(f"codec bitrate {rate} kbit/s is outside 6..128; low-bitrate speech is 16..32")
    if not x.size:
        return x.copy()
    y = _resample(x, sampling_rate, CODEC_RATE)
    decoded, _ = encode_decode(y, kind, rate)
    decoded = _fit_length(decoded, len(y))
    return _fit_length(_resample(decoded, CODEC_RATE, sampling_rate), len(x))


@CONDITIONS.register("noise")
def noise(
    signal,
    sampling_rate: int,
    rng: np.random.Generator,
    *,
    snr=None,
    kind: str | None = None,
    babble: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Background noise at ``snr`` dB (drawn from 5–15): ``kind`` white, pink, brown or babble
    (drawn when None; babble only when ``babble`` clips at ``sampling_rate`` are given)."""
    x = _mono(signal)
    kinds = NOISE_KINDS if babble else NOISE_KINDS[:-1]
    if kind == "babble" and not babble:
        raise ConfigError("noise kind 'babble' needs babble=[other clips at the same rate]")
    kind = _choose(kind, kinds, rng, "noise kind")
    level = _draw(snr, SNR_DB, rng, "noise SNR (dB)")
    if not x.size or _power(x) == 0:
        return x.copy()
    n = len(x)
    if kind == "babble":
        z = _babble(n, babble, rng)
    else:
        z = {"white": white_noise, "pink": pink_noise, "brown": brown_noise}[kind](n, rng)
    y = add_noise(x, z, level)
    peak = float(np.max(np.abs(y)))
    return y / np.float32(peak) if peak > 1.0 else y


@CONDITIONS.register("level")
def level(signal, sampling_rate: int, rng: np.random.Generator, *, db=None) -> np.ndarray:
    """A level change of ``db`` dB (drawn from −10…+10), clipped to [−1, 1] as a recorder would."""
    x = _mono(signal)
    change = _draw(db, LEVEL_DB, rng, "level change (dB)")
    return np.clip(gain(x, change), -1.0, 1.0).astype(np.float32)

"""Waveform augmentations for training: background noise at a given SNR, time stretch, speed, gain.

Every function takes a float32 mono ``signal`` ``[shape=(n_samples,)]`` and, where it draws random
numbers, a :class:`numpy.random.Generator`, so a seeded trainer reproduces its augmentations exactly.
:class:`Augmenter` chains them with the ranges of the SoundNet article (noise at 5–15 dB SNR, time
stretch ±10 %) plus speed (±10 %, pitch moves with it) and volume (±6 dB) changes.

Time stretch is WSOLA (waveform-similarity overlap-add, Verhelst & Roelands 1993): 40 ms Hann
frames at 50 % overlap are copied from the input at ``rate`` times the output hop, each shifted by
up to ±10 ms so that it lines up with the natural continuation of the previous frame. The pitch
is kept, and it costs about 1 ms per second of audio at 22 050 Hz (4–5× less than librosa's phase
vocoder, whose phase smearing also blurs the onsets and the voice quality that emotion lives in).
The alignment search runs on a 4× decimated copy and is then refined at full rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..channels import _power, add_noise, gain, pink_noise, snr_db, white_noise
from ..errors import AudioError, ConfigError

__all__ = [
    "snr_db",
    "white_noise",
    "pink_noise",
    "add_noise",
    "NoiseFolder",
    "time_stretch",
    "change_speed",
    "gain",
    "Augmenter",
]

NOISE_KINDS = ("white", "pink", "folder")

# snr_db, white_noise, pink_noise, add_noise and gain are serkit.channels' (one implementation, below
# the feature extractors whose channel views use them), re-exported here for the networks' augmenter.


class NoiseFolder:
    """Random clips of real recordings (babble, street, office, …) from a folder, at one sample rate.

    Files are decoded on first use and kept in memory (noise folders are small; a 1 h folder at
    16 kHz is 230 MB, so point this at a few minutes of noise, not a corpus).

    Parameters
    ----------
    folder
        A folder with audio files (searched recursively).
    sampling_rate
        Rate (Hz) the clips are returned at.
    """

    def __init__(self, folder, sampling_rate: int):
        from ..audio import find_audio_files

        self.folder = str(folder)
        self.sampling_rate = int(sampling_rate)
        p = Path(folder).expanduser()
        if not p.is_dir():
            raise ConfigError(f"noise_dir '{p}' is not a folder; pass a folder of noise recordings (wav, flac, …)")
        self.files = find_audio_files(p)
        if not self.files:
            raise ConfigError(f"noise_dir '{p}' has no audio files (looked for .wav .flac .ogg .mp3)")
        self._decoded: dict[int, np.ndarray] = {}

    def _get(self, i: int) -> np.ndarray:
        if i not in self._decoded:
            from ..audio import read

            x, _ = read(self.files[i], self.sampling_rate)
            if _power(x) == 0:
                raise AudioError(f"noise file '{self.files[i]}' is silent; remove it from the noise folder")
            self._decoded[i] = x
        return self._decoded[i]

    def clip(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[shape=(n,), float32] a random stretch of a random file, looped when the file is shorter."""
        x = self._get(int(rng.integers(len(self.files))))
        if len(x) < n:
            x = np.tile(x, n // len(x) + 1)
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start : start + n]


def time_stretch(
    signal: np.ndarray,
    rate: float,
    *,
    sampling_rate: int = 16000,
    frame_seconds: float = 0.040,
    tolerance_seconds: float = 0.010,
) -> np.ndarray:
    """Change tempo, keep pitch (WSOLA).

    Parameters
    ----------
    signal
        [shape=(n,)] input.
    rate
        Tempo factor, librosa's convention: ``rate > 1`` plays faster, the output has
        ``round(n / rate)`` samples.
    sampling_rate
        Rate of ``signal`` in Hz (sets the frame and search lengths).
    frame_seconds, tolerance_seconds
        WSOLA frame length and the largest shift searched for alignment.

    Returns
    -------
    np.ndarray [shape=(round(n / rate),), float32]
    """
    if not 0.25 <= rate <= 4.0:
        raise ConfigError(f"time-stretch rate {rate} is outside 0.25..4; a ±10 % stretch is rate 0.9..1.1")
    x = np.asarray(signal, dtype=np.float32)
    n_out = int(round(len(x) / rate))
    if rate == 1.0 or len(x) == 0:
        return x.copy()
    hs = max(2, int(round(frame_seconds * sampling_rate / 2)))  # synthesis hop
    n = 2 * hs  # frame length: 50 % overlap, periodic Hann windows sum to 1
    ha = hs * rate  # analysis hop
    tol = max(1, int(round(tolerance_seconds * sampling_rate)))
    n_frames = int(math.ceil(n_out / hs)) + 1
    front = hs + tol  # frame k's nominal start in the padded input is round(k*ha) + tol
    need = int(round((n_frames + 1) * ha)) + 2 * tol + 2 * n + 1
    xp = np.zeros(max(need, front + len(x)), dtype=np.float32)
    xp[front : front + len(x)] = x
    # coarse alignment on a 4x decimated copy: a 4-sample box filter keeps the pitch-rate
    # structure the search needs and cuts the cost of each correlation 16x
    dec = 4
    cs = np.concatenate([[0.0], np.cumsum(xp, dtype=np.float64)])
    xd = ((cs[dec:] - cs[:-dec]) / dec)[::dec].astype(np.float32)
    nd, told = n // dec, tol // dec

    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
    y = np.zeros(n_frames * hs + n, dtype=np.float32)
    wsum = np.zeros_like(y)
    prev = tol  # frame 0 sits at its nominal place
    for k in range(n_frames):
        nominal = int(round(k * ha)) + tol
        if k == 0:
            start = nominal
        else:
            natural = prev + hs  # what would follow the previous frame seamlessly
            if told > 0:
                lo = (nominal - tol) // dec
                region = xd[lo : lo + nd + 2 * told]
                template = xd[natural // dec : natural // dec + nd]
                c = np.correlate(region, template, "valid")
                coarse = lo * dec + int(np.argmax(c)) * dec
            else:
                coarse = nominal
            # refine at full rate around the coarse shift, within the tolerance
            a = max(nominal - tol, coarse - dec)
            b = min(nominal + tol, coarse + dec)
            c = np.correlate(xp[a : b + n], xp[natural : natural + n], "valid")
            start = a + int(np.argmax(c))
        y[k * hs : k * hs + n] += win * xp[start : start + n]
        wsum[k * hs : k * hs + n] += win
        prev = start
    # frame k's centre (output index k*hs + hs) reads the input around sample k*ha, so output
    # index m corresponds to input time (m - hs) * rate: drop the first hs output samples
    y = y[hs : hs + n_out]
    w = wsum[hs : hs + n_out]
    return np.where(w > 1e-3, y / np.maximum(w, 1e-3), y).astype(np.float32)


def change_speed(signal: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster by resampling (tempo *and* pitch change, like a tape).

    Returns
    -------
    np.ndarray [shape=(round(n / factor),), float32]
    """
    if not 0.25 <= factor <= 4.0:
        raise ConfigError(f"speed factor {factor} is outside 0.25..4; a ±10 % change is 0.9..1.1")
    x = np.asarray(signal, dtype=np.float32)
    if factor == 1.0 or len(x) == 0:
        return x.copy()
    import soxr

    # only the ratio matters to soxr: read the signal as if it had been sampled factor times faster
    return soxr.resample(x, 1000.0 * factor, 1000.0, quality="MQ").astype(np.float32)


def _range(value, name: str, *, symmetric_around: float | None = None) -> tuple[float, float] | None:
    """``None``/0 → off; a number v → (c - v, c + v) around ``symmetric_around``; a pair → itself."""
    if value is None or value is False or value == 0:
        return None
    from ..channels import parse_range

    if not isinstance(value, (int, float)):
        return parse_range(value, name)
    c = 0.0 if symmetric_around is None else symmetric_around
    return parse_range((c - float(value), c + float(value)), name)


class Augmenter:
    """Random waveform augmentation: ``aug(signal, rng) -> signal``.

    Each transform is applied independently with probability ``p``, in the order speed → stretch →
    gain → noise (noise last, so the SNR is measured against the signal the model actually sees).
    A result louder than full scale is scaled back to a peak of 1 (scaling, unlike clipping,
    keeps the drawn SNR).

    Parameters
    ----------
    sampling_rate
        Rate of the signals (Hz).
    noise_snr
        (low, high) SNR range in dB, drawn uniformly; ``None`` turns noise off.
    noise
        Comma-separated kinds drawn from uniformly: ``white``, ``pink``, ``folder`` (clips of
        ``noise_dir``). Giving ``noise_dir`` adds ``folder`` when it is not listed.
    noise_dir
        Folder of real noise recordings, optional.
    stretch
        Time-stretch rate range: ``0.1`` means rate ∈ [0.9, 1.1]; a (low, high) pair; 0 off.
    speed
        Speed (resampling) factor range, same convention as ``stretch``; 0 off.
    gain_db
        Gain range in dB: ``6`` means ±6 dB; a pair; 0 off.
    p
        Probability of applying each transform.
    """

    def __init__(
        self,
        *,
        sampling_rate: int = 16000,
        noise_snr: Sequence[float] | None = (5.0, 15.0),
        noise: str | Sequence[str] | None = "white,pink",
        noise_dir: str | None = None,
        stretch: float | Sequence[float] | None = 0.1,
        speed: float | Sequence[float] | None = 0.1,
        gain_db: float | Sequence[float] | None = 6.0,
        p: float = 0.5,
    ):
        self.sampling_rate = int(sampling_rate)
        if isinstance(noise_snr, (int, float)) and not isinstance(noise_snr, bool):
            noise_snr = (noise_snr, noise_snr)  # one number: a fixed SNR
        self.noise_snr = _range(noise_snr, "noise_snr") if noise_snr is not None else None
        kinds = [k.strip() for k in (noise.split(",") if isinstance(noise, str) else (noise or [])) if k.strip()]
        bad = [k for k in kinds if k not in NOISE_KINDS]
        if bad:
            raise ConfigError(f"unknown noise kind(s) {bad}; use a comma-separated subset of {', '.join(NOISE_KINDS)}")
        if noise_dir and "folder" not in kinds:
            kinds.append("folder")
        if "folder" in kinds and not noise_dir:
            raise ConfigError("noise kind 'folder' needs noise_dir=<folder of noise recordings>")
        self.noise_kinds = kinds
        self.noise_dir = str(noise_dir) if noise_dir else None
        self.stretch = _range(stretch, "stretch", symmetric_around=1.0)
        self.speed = _range(speed, "speed", symmetric_around=1.0)
        self.gain_db = _range(gain_db, "gain_db")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"augmentation probability p={p} must be in [0, 1]")
        self.p = float(p)
        self._folder: NoiseFolder | None = None

    def config(self) -> dict:
        """JSON-able options (to record in a model's training configuration)."""
        return {
            "sampling_rate": self.sampling_rate,
            "noise_snr": list(self.noise_snr) if self.noise_snr else None,
            "noise": ",".join(self.noise_kinds),
            "noise_dir": self.noise_dir,
            "stretch": list(self.stretch) if self.stretch else None,
            "speed": list(self.speed) if self.speed else None,
            "gain_db": list(self.gain_db) if self.gain_db else None,
            "p": self.p,
        }

    def noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[shape=(n,)] one noise draw of a random kind."""
        kind = self.noise_kinds[int(rng.integers(len(self.noise_kinds)))]
        if kind == "white":
            return white_noise(n, rng)
        if kind == "pink":
            return pink_noise(n, rng)
        if self._folder is None:
            self._folder = NoiseFolder(self.noise_dir, self.sampling_rate)
        return self._folder.clip(n, rng)

    def __call__(self, signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one [shape=(n,)] float32 signal; the length changes with speed and stretch."""
        x = np.asarray(signal, dtype=np.float32)
        if self.speed and rng.random() < self.p:
            x = change_speed(x, float(rng.uniform(*self.speed)))
        if self.stretch and rng.random() < self.p:
            x = time_stretch(x, float(rng.uniform(*self.stretch)), sampling_rate=self.sampling_rate)
        if self.gain_db and rng.random() < self.p:
            x = gain(x, float(rng.uniform(*self.gain_db)))
        if self.noise_snr and self.noise_kinds and rng.random() < self.p and len(x):
            x = add_noise(x, self.noise(len(x), rng), float(rng.uniform(*self.noise_snr)))
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        return x / np.float32(peak) if peak > 1.0 else x

    def __repr__(self) -> str:
        return "Augmenter(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

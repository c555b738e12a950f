"""Utterance-level functionals (mean, std, percentiles, moments, slope) of a frame-level LLD matrix.

The classic SER recipe summarises each low-level descriptor (LLD) track of an utterance by a fixed
set of statistics, so that utterances of any length become vectors of one length.

Voiced-only descriptors (F0, formants) are undefined in unvoiced frames; the LLD convention in
serkit is that such frames hold ``NaN``. Every statistic here ignores non-finite values column by
column, so the F0 mean is the mean over voiced frames, and a column with no finite value at all (an
all-unvoiced clip) gives zeros, never ``NaN``. When voiced-only columns are present a
``voicing_ratio`` feature (fraction of voiced frames) is appended, so that "no voicing" stays
distinguishable from "F0 of 0 Hz".

>>> import numpy as np
>>> x = np.array([[1.0, np.nan], [2.0, 200.0], [3.0, 220.0], [4.0, np.nan]])
>>> v, names = functionals(x, ["rms", "f0"], frame_rate=100.0, stats=("mean", "slope"))
>>> dict(zip(names, np.round(v, 3).tolist()))
{'rms_mean': 2.5, 'rms_slope': 100.0, 'f0_mean': 210.0, 'f0_slope': 2000.0, 'voicing_ratio': 0.5}
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["STATS", "DEFAULT_STATS", "functionals", "functional_names", "is_voiced_only"]

#: Every statistic :func:`functionals` knows, in output order when all are asked for.
#: ``pNN`` are percentiles (linear interpolation, as ``np.percentile``); ``std``, ``skew`` and
#: ``kurtosis`` are population moments (``ddof=0``; ``kurtosis`` is excess kurtosis, 0 for a normal
#: distribution, as ``scipy.stats.kurtosis``); ``slope`` is the least-squares linear-regression slope
#: in LLD units per second; ``range`` = max - min; ``iqr`` = p75 - p25.
STATS = (
    "mean",
    "std",
    "min",
    "p01",
    "p25",
    "p50",
    "p75",
    "p99",
    "max",
    "range",
    "iqr",
    "skew",
    "kurtosis",
    "slope",
)

#: The default set: all of :data:`STATS` (14 per LLD).
DEFAULT_STATS = STATS

#: Values per column block in :func:`functionals` (16 MB of float64 per temporary).
_BLOCK_ELEMENTS = 1 << 21

_PERCENTILE = re.compile(r"p(\d{1,2})")
_VOICED = re.compile(r"(f0|f[1-5])(_.*)?")


def is_voiced_only(name: str) -> bool:
    """Whether an LLD name denotes a voiced-only descriptor (``f0``, ``F1`` ... ``F5``, ``f0_hz``, ``F1_bw``).

    >>> [is_voiced_only(n) for n in ("f0", "F2", "F1_bw", "flatness", "mfcc_1")]
    [True, True, True, False, False]
    """
    return _VOICED.fullmatch(name.lower()) is not None


def _check_stats(stats: Sequence[str]) -> tuple[str, ...]:
    stats = tuple(stats)
    if not stats:
        raise ConfigError("stats is empty; pass at least one of " + ", ".join(STATS))
    for s in stats:
        if s not in STATS and not _PERCENTILE.fullmatch(s):
            raise ConfigError(f"unknown functional {s!r}; known: {', '.join(STATS)} (or any percentile 'pNN')")
    return stats


def _voiced_columns(names: Sequence[str], voiced_only: Sequence[str] | None) -> np.ndarray:
    if voiced_only is None:
        return np.array([is_voiced_only(n) for n in names], dtype=bool)
    unknown = sorted(set(voiced_only) - set(names))
    if unknown:
        raise ConfigError(f"voiced_only names {unknown} are not LLD names; LLDs are: {', '.join(names)}")
    keep = set(voiced_only)
    return np.array([n in keep for n in names], dtype=bool)


def functional_names(
    names: Sequence[str], *, stats: Sequence[str] = DEFAULT_STATS, voiced_only: Sequence[str] | None = None
) -> list[str]:
    """The feature names :func:`functionals` returns for these LLD names, without computing anything.

    Names are ``"{lld}_{stat}"`` in LLD-major order, plus ``"voicing_ratio"`` last when any column
    is voiced-only.

    >>> functional_names(["rms", "f0"], stats=("mean", "p50"))
    ['rms_mean', 'rms_p50', 'f0_mean', 'f0_p50', 'voicing_ratio']
    """
    stats = _check_stats(stats)
    out = [f"{n}_{s}" for n in names for s in stats]
    if _voiced_columns(names, voiced_only).any():
        out.append("voicing_ratio")
    return out


def functionals(
    lld: np.ndarray,
    names: Sequence[str],
    *,
    frame_rate: float,
    stats: Sequence[str] = DEFAULT_STATS,
    voiced_only: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Summarise frame-level descriptors into one utterance-level vector.

    Parameters
    ----------
    lld : np.ndarray [shape=(n_frames, n_llds)]
        Frame-level descriptors, one column per LLD. Non-finite values (``NaN``) mark frames where
        a descriptor is undefined (F0 in unvoiced frames) and are left out of every statistic.
    names : sequence of str [length n_llds]
        The LLD names (column order).
    frame_rate : float
        Frames per second (e.g. 100 for a 10 ms hop); sets the unit of ``slope`` (per second).
    stats : sequence of str
        Which statistics, from :data:`STATS` (any ``"pNN"`` percentile is accepted too).
    voiced_only : sequence of str, optional
        Names of voiced-only columns. By default every column whose name :func:`is_voiced_only`
        says so (``f0``, ``F1``-``F5``). When there is any, ``voicing_ratio`` (fraction of frames
        where the first of them is finite, in [0, 1]) is appended.

    Returns
    -------
    vector : np.ndarray [shape=(n_llds * len(stats) [+ 1],), float64]
        LLD-major: all statistics of column 0, then of column 1, ... A column with no finite
        value, or an empty ``lld``, gives zeros; skewness and kurtosis of a constant column are 0.
        The vector never contains ``NaN`` or infinities when ``lld``'s finite values are finite.
    feature_names : list of str
        ``"{lld}_{stat}"`` (see :func:`functional_names`).

    Raises
    ------
    ConfigError
        ``lld`` is not 2-D, ``names`` does not match its columns, an unknown statistic, or a
        non-positive ``frame_rate``.
    """
    stats = _check_stats(stats)
    x = np.asarray(lld, dtype=np.float64)
    names = list(names)
    if x.ndim != 2:
        raise ConfigError(f"lld must be a 2-D [n_frames, n_llds] array, got shape {x.shape}")
    if x.shape[1] != len(names):
        raise ConfigError(f"lld has {x.shape[1]} columns but {len(names)} names were given; pass one name per column")
    if not frame_rate > 0:
        raise ConfigError(f"frame_rate must be positive (frames per second), got {frame_rate}")
    voiced = _voiced_columns(names, voiced_only)
    n, d = x.shape
    # Column blocks bound the temporaries (a dozen copies of the block) on long recordings; LLD-major
    # order means the blocks' vectors simply concatenate.
    step = max(1, _BLOCK_ELEMENTS // max(n, 1))
    parts = [_stats_block(x[:, k : k + step], stats, float(frame_rate)) for k in range(0, d, step)]
    vec = np.concatenate(parts) if parts else np.zeros(0)
    feature_names = [f"{nm}_{s}" for nm in names for s in stats]
    if voiced.any():
        first = int(np.flatnonzero(voiced)[0])
        vec = np.append(vec, np.isfinite(x[:, first]).sum() / n if n else 0.0)
        feature_names.append("voicing_ratio")
    return vec, feature_names


def _percentiles_of(stat: str) -> tuple[float, ...]:
    """The percentiles statistic ``stat`` is made of (none for a moment)."""
    fixed = {"min": (0.0,), "max": (100.0,), "range": (0.0, 100.0), "iqr": (25.0, 75.0)}
    if stat in fixed:
        return fixed[stat]
    match = _PERCENTILE.fullmatch(stat)
    return (float(match.group(1)),) if match else ()


def _stats_block(x: np.ndarray, stats: tuple[str, ...], frame_rate: float) -> np.ndarray:
    """The statistics of every column of ``x`` [n, d], LLD-major [d * len(stats)]."""
    n, d = x.shape

    finite = np.isfinite(x)
    count = finite.sum(axis=0)  # [d]
    has = count > 0
    safe_count = np.maximum(count, 1)
    # Statistics are computed on a copy where undefined values are 0 and then masked, so that one
    # pass of vectorised numpy covers every column whatever its voicing pattern.
    xz = np.where(finite, x, 0.0)
    mean = xz.sum(axis=0) / safe_count
    dev = np.where(finite, x - mean, 0.0)
    dev2 = dev * dev  # products, not np.power: the moments are most of this function's time
    m2 = dev2.sum(axis=0) / safe_count
    std = np.sqrt(m2)

    # every percentile asked for (min and max are p0 and p100, range and iqr reuse theirs), read from
    # the sorted columns in one gather
    qs = sorted({q for s in stats for q in _percentiles_of(s)})
    pcts = {}
    if qs and n:
        srt = np.sort(np.where(finite, x, np.inf), axis=0)  # undefined values sort last ...
        srt[np.isinf(srt)] = 0.0  # ... and are never indexed for a column with values
        pos = (np.array(qs)[:, None] / 100.0) * (safe_count - 1)  # [q, d]
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, safe_count - 1)
        frac = pos - lo
        vlo = np.take_along_axis(srt, lo, axis=0)
        vhi = np.take_along_axis(srt, hi, axis=0)
        pcts = dict(zip(qs, vlo + frac * (vhi - vlo)))

    def pct(q: float) -> np.ndarray:
        return pcts[q] if n else np.zeros(d)

    # A column is "flat" when its spread is at rounding level: higher moments are then noise.
    flat = m2 <= 1e-20 * np.maximum(mean**2, 1e-300)
    safe_m2 = np.where(flat, 1.0, m2)

    cols: list[np.ndarray] = []
    for s in stats:
        if s == "mean":
            v = mean
        elif s == "std":
            v = std
        elif s == "min":
            v = pct(0.0)
        elif s == "max":
            v = pct(100.0)
        elif s == "range":
            v = pct(100.0) - pct(0.0)
        elif s == "iqr":
            v = pct(75.0) - pct(25.0)
        elif s == "skew":
            v = np.where(flat, 0.0, ((dev2 * dev).sum(axis=0) / safe_count) / (safe_m2 * np.sqrt(safe_m2)))
        elif s == "kurtosis":
            v = np.where(flat, 0.0, ((dev2 * dev2).sum(axis=0) / safe_count) / (safe_m2 * safe_m2) - 3.0)
        elif s == "slope":
            t = np.arange(n, dtype=np.float64)[:, None] / float(frame_rate)
            tmean = np.where(finite, t, 0.0).sum(axis=0) / safe_count
            dt = np.where(finite, t - tmean, 0.0)
            sxx = (dt**2).sum(axis=0)
            v = np.where(sxx > 0, (dt * dev).sum(axis=0) / np.where(sxx > 0, sxx, 1.0), 0.0)
        else:
            v = pct(float(_PERCENTILE.fullmatch(s).group(1)))
        cols.append(np.where(has, v, 0.0))

    return np.stack(cols, axis=1).reshape(-1) if cols else np.zeros(0)

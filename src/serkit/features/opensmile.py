"""openSMILE's reference parameter sets as serkit extractors: ``egemaps`` (eGeMAPSv02) and ``compare`` (ComParE_2016).

The ``opensmile`` package (audEERING's wrapper of the openSMILE C++ library) is an optional
dependency, imported only when features are computed: ``pip install 'serkit[opensmile]'``.

>>> from serkit.features import get_extractor
>>> get_extractor("egemaps")
EGeMAPSExtractor(level='functionals')
"""

from __future__ import annotations

import numpy as np

from ..audio import pad_to
from ..errors import ConfigError
from .base import FeatureExtractor, register_extractor
from .functionals import functional_names, functionals

__all__ = ["OpenSmileExtractor", "EGeMAPSExtractor", "ComParEExtractor"]

_LEVELS = ("functionals", "lld")

#: Smile objects of this process by (feature set, level). extract() unpickles a fresh extractor for
#: every chunk of files it sends to a worker; sharing the parsed configuration per process saves
#: ~40 ms (ComParE) per chunk. Safe to share: every process_signal call makes its own native instance.
_PROCESS_SMILES: dict = {}


def _opensmile():
    try:
        import opensmile
    except ImportError as exc:
        raise ConfigError(
            f"the openSMILE feature sets (egemaps, compare) need the 'opensmile' package ({exc}); "
            "install it with: pip install 'serkit[opensmile]'"
        ) from None
    return opensmile


class OpenSmileExtractor(FeatureExtractor):
    """An openSMILE feature set computed by the ``opensmile`` package on 16 kHz mono signals.

    ``level="functionals"`` (default): the set's own utterance-level functionals (eGeMAPS: 88,
    ComParE: 6373), exactly as openSMILE defines them. ``level="lld"``: the vector is instead
    serkit's :func:`~serkit.features.functionals.functionals` (14 statistics per LLD, voiced-only
    LLDs over voiced frames, plus ``voicing_ratio``) of the set's frame-level LLDs; a smaller,
    differently summarised alternative (eGeMAPS: 351, ComParE: 911). Frame-level LLDs themselves
    come from :meth:`lld` whatever the level.

    The ``opensmile.Smile`` objects are created on first use and cached on the instance, but are
    not pickled: every extraction worker process builds its own.

    Signals shorter than :attr:`min_duration` (0.1 s, below which openSMILE returns NaN) are
    zero-padded symmetrically.
    """

    #: opensmile.FeatureSet member name
    feature_set: str = ""
    #: LLD columns that are 0 in unvoiced frames (openSMILE's convention); the first is the F0 track
    voiced_llds: tuple[str, ...] = ()
    sampling_rate = 16000
    min_duration = 0.1
    VERSION = 1

    def __init__(self, *, level: str = "functionals", sampling_rate: int = 16000):
        self.level = level
        self.sampling_rate = sampling_rate

    def full_config(self) -> dict:
        # feature set and code version join the cache key; config() keeps to constructor options
        return {**super().full_config(), "feature_set": self.feature_set}

    # -- pickling: a Smile object pickles to ~0.5 MB (ComParE) and would travel with every chunk of
    # files extract() sends to a worker; the worker takes its own from _PROCESS_SMILES instead
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_smiles", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _check(self) -> None:
        if self.level not in _LEVELS:
            raise ConfigError(f"unknown level {self.level!r} for {self.name}; use 'functionals' or 'lld'")

    def _smile(self, level: str):
        smiles = self.__dict__.setdefault("_smiles", {})
        if level not in smiles:
            key = (self.feature_set, level)
            if key not in _PROCESS_SMILES:
                opensmile = _opensmile()
                _PROCESS_SMILES[key] = opensmile.Smile(
                    feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                    feature_level=opensmile.FeatureLevel.Functionals
                    if level == "functionals"
                    else opensmile.FeatureLevel.LowLevelDescriptors,
                )
            smiles[level] = _PROCESS_SMILES[key]
        return smiles[level]

    def _pad(self, signal: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(signal, dtype=np.float32)
        if x.ndim != 1:
            raise ConfigError(f"{self.name} expects a mono signal [shape=(n_samples,)], got shape {x.shape}")
        return pad_to(x, int(np.ceil(self.min_duration * self.sampling_rate)))

    def _process(self, level: str, signal: np.ndarray) -> np.ndarray:
        df = self._smile(level).process_signal(self._pad(signal), self.sampling_rate)
        return df.to_numpy(dtype=np.float32)

    def lld_names(self) -> list[str]:
        """Names of the set's frame-level descriptors (eGeMAPS: 25, ComParE: 65)."""
        return list(self._smile("lld").feature_names)

    def lld(self, signal: np.ndarray) -> np.ndarray:
        """openSMILE's frame-level descriptors [shape=(n_frames, n_llds), float32] (10 ms hop).

        As openSMILE outputs them: voiced-only descriptors are 0 in unvoiced frames.
        """
        return self._process("lld", signal)

    def _lld_nan(self, signal: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """LLDs with unvoiced frames of voiced-only columns set to NaN (serkit's convention)."""
        lld = self.lld(signal).astype(np.float64)
        names = self.lld_names()
        cols = [names.index(n) for n in self.voiced_llds]
        unvoiced = lld[:, cols[0]] == 0  # the F0 track decides voicing for all voiced-only columns
        lld[np.ix_(unvoiced, cols)] = np.nan
        return lld, names

    def functionals(self, signal: np.ndarray) -> np.ndarray:
        """[shape=(n_features,), float32]; names in :meth:`feature_names`."""
        self._check()
        if self.level == "functionals":
            return self._process("functionals", signal)[0]
        lld, names = self._lld_nan(signal)
        v, _ = functionals(lld, names, frame_rate=100.0, voiced_only=self.voiced_llds)
        return v.astype(np.float32)

    def feature_names(self) -> list[str]:
        self._check()
        if self.level == "functionals":
            return list(self._smile("functionals").feature_names)
        return functional_names(self.lld_names(), voiced_only=self.voiced_llds)


@register_extractor("egemaps")
class EGeMAPSExtractor(OpenSmileExtractor):
    """eGeMAPS v02 (Eyben et al. 2016): 88 knowledge-based functionals of 25 LLDs (pitch, jitter,
    shimmer, loudness, HNR, formants, spectral balance, MFCC 1-4)."""

    feature_set = "eGeMAPSv02"
    voiced_llds = (
        "F0semitoneFrom27.5Hz_sma3nz",
        "jitterLocal_sma3nz",
        "shimmerLocaldB_sma3nz",
        "HNRdBACF_sma3nz",
        "logRelF0-H1-H2_sma3nz",
        "logRelF0-H1-A3_sma3nz",
        "F1frequency_sma3nz",
        "F1bandwidth_sma3nz",
        "F1amplitudeLogRelF0_sma3nz",
        "F2frequency_sma3nz",
        "F2bandwidth_sma3nz",
        "F2amplitudeLogRelF0_sma3nz",
        "F3frequency_sma3nz",
        "F3bandwidth_sma3nz",
        "F3amplitudeLogRelF0_sma3nz",
    )


@register_extractor("compare")
class ComParEExtractor(OpenSmileExtractor):
    """ComParE 2016 (Schuller et al.): 6373 brute-force functionals of 65 LLDs and their deltas."""

    feature_set = "ComParE_2016"
    voiced_llds = ("F0final_sma", "jitterLocal_sma", "jitterDDP_sma", "shimmerLocal_sma")

"""Feature extraction: librosa spectral/prosodic functionals, openSMILE sets, neural embeddings.

>>> from serkit.features import get_extractor
>>> get_extractor("nonexistent")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
serkit.errors.ConfigError: unknown feature set 'nonexistent'; known: ...
"""

from __future__ import annotations

from .base import EXTRACTORS, FeatureExtractor, extract, get_extractor, register_extractor

__all__ = ["FeatureExtractor", "EXTRACTORS", "extract", "get_extractor", "register_extractor"]

"""Pretrained-network embeddings of audio files: one fixed-length vector per file or utterance.

A thin task verb over the ``soundnet`` feature extractor and :func:`serkit.features.base.extract`,
so embeddings share the on-disk feature cache with training: a second call on the same files
reads vectors from disk instead of running the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

__all__ = ["embed"]


def _expand(paths_or_utterances) -> list:
    from .audio import find_audio_files
    from .errors import AudioError

    if isinstance(paths_or_utterances, (str, os.PathLike)) or hasattr(paths_or_utterances, "path"):
        paths_or_utterances = [paths_or_utterances]
    items: list = []
    for it in paths_or_utterances:
        if hasattr(it, "path"):  # an Utterance (possibly a segment of its file): kept as is
            items.append(it)
            continue
        found = find_audio_files(it)
        if not found:
            raise AudioError(f"folder '{it}' has no audio files (looked for .wav .flac .ogg .mp3)")
        items.extend(str(p) for p in found)
    return items


def embed(
    paths_or_utterances: Iterable | str | os.PathLike,
    *,
    layer: str = "conv5",
    pool: str = "mean,max",
    slowdown=1.0,
    progress: bool = True,
) -> tuple[list, np.ndarray]:
    """SoundNet-8 embeddings of audio files, folders or utterances.

    Parameters
    ----------
    paths_or_utterances
        An audio file, a folder (searched recursively), a list of those, or a list of
        :class:`serkit.corpora.base.Utterance` (whose ``start``/``end`` select a segment).
    layer : str
        SoundNet layer(s), e.g. ``"conv5"`` or ``"conv4,conv5"``.
    pool : str
        Statistics over frames, e.g. ``"mean,max"`` (also ``std``).
    slowdown : float, str or list
        Play the speech this many times slower into the network (``3``), or several such vectors
        concatenated (``"2,3,4"``); see :mod:`serkit.features.soundnet`.
    progress : bool
        Show a progress bar (and the one-time weights download message).

    Returns
    -------
    items : list
        What each row describes, in order: file paths as ``str`` (folders expanded, sorted), or the
        utterances as given.
    embeddings : np.ndarray [shape=(len(items), n_features), float32]
        512 values per item for the default ``conv5`` with ``mean,max``.

    Raises
    ------
    AudioError
        A path does not exist, a folder holds no audio, or a file cannot be decoded.
    ConfigError
        Unknown layer or pooling statistic.
    """
    from .features.base import extract, get_extractor

    extractor = get_extractor("soundnet", layer=layer, pool=pool, slowdown=slowdown)
    items = _expand(paths_or_utterances)
    if not items:
        return [], np.zeros((0, len(extractor.feature_names())), dtype=np.float32)
    return items, extract(extractor, items, progress=progress)

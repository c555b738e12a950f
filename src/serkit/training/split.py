"""The early-stopping split of training data: hold out whole *training* speakers.

Model selection and early stopping see training speakers only, so validation mimics unseen
speakers. :func:`speaker_split` works on plain arrays (speaker and label of each utterance), so the
trainer needs no utterance objects; :func:`serkit.evaluation.validation_split` is its form for
utterances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

__all__ = ["Split", "speaker_split"]


class Split(NamedTuple):
    """Indices of a validation split; ``by_speaker`` is False for a one-speaker utterance split."""

    train_idx: np.ndarray
    val_idx: np.ndarray
    val_speakers: list[str]
    by_speaker: bool


def speaker_split(speakers: Sequence, labels: Sequence, fraction: float = 0.15, seed: int = 0) -> Split:
    """Hold out whole speakers (seeded order, until ``fraction`` of the utterances) for validation.

    Parameters
    ----------
    speakers, labels : sequence [shape=(n,)]
        Speaker and label of every training utterance (compared as strings).
    fraction : float
        Target share of utterances for validation, ``0 < fraction < 1``: at least one speaker, at
        least one left to train.
    seed : int
        Seed of the speaker (or utterance) shuffle.

    Returns
    -------
    Split
        With a single speaker the split falls back to a label-stratified utterance split (at least
        one utterance of each class stays in training) and ``by_speaker`` is False.

    >>> s = speaker_split(["a", "a", "b", "b", "c", "c"], [0, 1, 0, 1, 0, 1], 0.3, seed=0)
    >>> len(s.val_speakers), len(s.val_idx), s.by_speaker
    (1, 2, True)
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}; e.g. 0.15")
    n = len(speakers)
    if n < 2:
        raise ConfigError(f"a validation split needs at least 2 training utterances, found {n}; add training data")
    if len(labels) != n:
        raise ConfigError(f"got {n} speakers and {len(labels)} labels; they must match")
    spk = np.array([str(s) for s in speakers], dtype=object)
    unique, counts = np.unique(spk.astype(str), return_counts=True)
    rng = np.random.default_rng(seed)

    if len(unique) >= 2:
        count = dict(zip(unique.tolist(), counts.tolist()))
        chosen: list[str] = []
        total = 0
        for s in rng.permutation(unique).tolist():
            if total >= fraction * n or len(chosen) == len(unique) - 1:
                break
            chosen.append(s)
            total += count[s]
        mask = np.isin(spk, chosen)
        return Split(np.flatnonzero(~mask), np.flatnonzero(mask), sorted(chosen), True)

    # One speaker: only an utterance split is possible. Stratify so that rare classes are validated too,
    # but keep at least one utterance of each class for training.
    lab = np.array([str(x) for x in labels], dtype=object)
    val: list[int] = []
    for c in sorted(set(lab.tolist())):
        idx = rng.permutation(np.flatnonzero(lab == c))
        take = min(int(round(fraction * len(idx))), len(idx) - 1)
        val.extend(idx[:take].tolist())
    if not val:
        val = [int(rng.integers(n))]
    mask = np.zeros(n, dtype=bool)
    mask[val] = True
    return Split(np.flatnonzero(~mask), np.flatnonzero(mask), unique.tolist(), False)

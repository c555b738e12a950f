"""Evaluation protocols: how utterances are split into train/test folds, and the validation split.

``loso``, ``loco``, ``speaker-kfold:K``, ``holdout:SPK1,SPK2`` are speaker-independent; the
speaker-dependent ``random-split:K`` must be asked for by name. :func:`validation_split` holds out
whole *training* speakers for early stopping and model selection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError
from ..training.split import Split, speaker_split

__all__ = [
    "Fold",
    "Protocol",
    "LeaveOneSpeakerOut",
    "LeaveOneCorpusOut",
    "SpeakerKFold",
    "Holdout",
    "RandomSplit",
    "FewShot",
    "PROTOCOLS",
    "parse_protocol",
    "validation_split",
]

#: the protocol spellings :func:`parse_protocol` understands (shown in error messages)
PROTOCOLS = ("loso", "loco", "speaker-kfold:K", "holdout:SPK1,SPK2,...", "random-split:K", "fewshot:K")


class Fold(NamedTuple):
    """One train/test split: indices into the utterance list, and the test speakers (sorted)."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    test_speakers: list[str]


class Protocol:
    """How utterances are split into folds; build one with :func:`parse_protocol`.

    Attributes
    ----------
    name : str
        The spelling that :func:`parse_protocol` turns back into this protocol.
    speaker_independent : bool
        ``False`` when a speaker may appear in both training and test of a fold.
    """

    speaker_independent: bool = True

    @property
    def name(self) -> str:
        raise NotImplementedError

    def folds(self, utterances: Sequence) -> list[Fold]:
        """Split ``utterances`` into folds; returns ``[(train_idx, test_idx, test_speakers), ...]``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name, "speaker_independent": self.speaker_independent}

    def __repr__(self) -> str:
        return f"parse_protocol({self.name!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def _speakers_of(utterances: Sequence) -> np.ndarray:
    speakers = []
    for u in utterances:
        if u.speaker is None or str(u.speaker) == "":
            raise ConfigError(
                f"utterance {u.id!r} has no speaker; a speaker-independent protocol needs every utterance's "
                "speaker (fix the corpus manifest, or use 'random-split:K' for a speaker-dependent evaluation)"
            )
        speakers.append(str(u.speaker))
    return np.array(speakers, dtype=object)


def _fold(mask_test: np.ndarray, speakers: np.ndarray) -> Fold:
    test_idx = np.flatnonzero(mask_test)
    return Fold(np.flatnonzero(~mask_test), test_idx, sorted(set(speakers[test_idx].tolist())))


def _require_utterances(utterances: Sequence, name: str) -> None:
    if len(utterances) == 0:
        raise ConfigError(f"{name}: no utterances to split; check the corpus path and label mapping")


class LeaveOneSpeakerOut(Protocol):
    """``loso``: one fold per speaker (sorted by speaker id); that speaker is the whole test set."""

    @property
    def name(self) -> str:
        return "loso"

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        speakers = _speakers_of(utterances)
        return _one_fold_each(
            speakers,
            speakers,
            "leave-one-speaker-out",
            "speakers",
            "add recordings of more speakers, or ask explicitly for a speaker-dependent evaluation "
            "with protocol 'random-split:5'",
        )


def _one_fold_each(groups: np.ndarray, speakers: np.ndarray, protocol: str, what: str, fix: str) -> list[Fold]:
    """One fold per distinct value of ``groups`` (sorted), which is that fold's whole test set."""
    unique = sorted(set(groups.tolist()))
    if len(unique) < 2:
        raise ConfigError(f"{protocol} needs at least 2 {what}, found {len(unique)} ({', '.join(unique)}); {fix}")
    return [_fold(groups == g, speakers) for g in unique]


class SpeakerKFold(Protocol):
    """``speaker-kfold:K``: K folds of disjoint speakers, balanced by utterance count.

    Speakers are shuffled with ``seed``, ordered by utterance count (largest first) and each is given
    to the fold with the fewest utterances so far, so folds have similar sizes and the split is the
    same for the same data and seed.
    """

    def __init__(self, k: int, seed: int = 0):
        self.k = int(k)
        self.seed = int(seed)
        if self.k < 2:
            raise ConfigError(f"speaker-kfold:{k}: K must be at least 2; e.g. 'speaker-kfold:5'")

    @property
    def name(self) -> str:
        return f"speaker-kfold:{self.k}"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "k": self.k, "seed": self.seed}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        speakers = _speakers_of(utterances)
        unique, counts = np.unique(speakers.astype(str), return_counts=True)
        if len(unique) < self.k:
            fix = (
                f"use 'speaker-kfold:{len(unique)}' or 'loso'"
                if len(unique) >= 2
                else "add recordings of more speakers, or ask explicitly for the speaker-dependent 'random-split:5'"
            )
            raise ConfigError(
                f"{self.name} needs at least {self.k} speakers, found {len(unique)} ({', '.join(unique)}); {fix}"
            )
        count = dict(zip(unique.tolist(), counts.tolist()))
        order = np.random.default_rng(self.seed).permutation(unique).tolist()
        order.sort(key=lambda s: -count[s])  # stable: ties keep the seeded shuffle
        totals = [0] * self.k
        members: list[list[str]] = [[] for _ in range(self.k)]
        for s in order:
            j = min(range(self.k), key=lambda f: (totals[f], len(members[f]), f))
            totals[j] += count[s]
            members[j].append(s)
        return [_fold(np.isin(speakers, m), speakers) for m in members]


class LeaveOneCorpusOut(Protocol):
    """``loco``: one fold per corpus (sorted by name); the whole corpus is the test set.

    Train on the other corpora, test on one never heard: the honest picture of a model on unseen
    recording conditions, speakers and actors. With a label set such as ``6class`` every corpus
    shares the classes; a class the training corpora lack is simply never predicted.
    """

    @property
    def name(self) -> str:
        return "loco"

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        corpora = np.array([str(u.corpus) for u in utterances], dtype=object)
        return _one_fold_each(
            corpora,
            _speakers_of(utterances),
            "leave-one-corpus-out",
            "corpora",
            "pass several --corpus options, e.g. --corpus emodb:DIR --corpus tess:DIR --label-set 6class",
        )


class Holdout(Protocol):
    """``holdout:SPK1,SPK2``: the named speakers are the test set, every other speaker trains (one fold)."""

    def __init__(self, speakers: Sequence[str]):
        self.speakers = tuple(str(s) for s in speakers)
        if not self.speakers:
            raise ConfigError("holdout needs at least one test speaker; e.g. 'holdout:spk03,spk07'")

    @property
    def name(self) -> str:
        return "holdout:" + ",".join(self.speakers)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "test_speakers": list(self.speakers)}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        speakers = _speakers_of(utterances)
        known = sorted(set(speakers.tolist()))
        missing = [s for s in self.speakers if s not in known]
        if missing:
            raise ConfigError(f"holdout speakers {missing} are not in the data; speakers found: {', '.join(known)}")
        mask = np.isin(speakers, list(self.speakers))
        if mask.all():
            raise ConfigError(
                f"{self.name} leaves no speaker to train on; hold out fewer of the speakers: {', '.join(known)}"
            )
        return [_fold(mask, speakers)]


class RandomSplit(Protocol):
    """``random-split:K``: utterance-level K-fold, stratified by label — **speaker-dependent**.

    The same speaker appears in training and test, which flatters the numbers; it exists for
    single-speaker data and for comparison with papers that used it, and reports say so.
    """

    speaker_independent = False

    def __init__(self, k: int, seed: int = 0):
        self.k = int(k)
        self.seed = int(seed)
        if self.k < 2:
            raise ConfigError(f"random-split:{k}: K must be at least 2; e.g. 'random-split:5'")

    @property
    def name(self) -> str:
        return f"random-split:{self.k}"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "k": self.k, "seed": self.seed}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        n = len(utterances)
        if n < self.k:
            raise ConfigError(f"{self.name} needs at least {self.k} utterances, found {n}; use a smaller K")
        labels = np.array([str(u.label) for u in utterances], dtype=object)
        speakers = np.array([str(u.speaker) for u in utterances], dtype=object)
        rng = np.random.default_rng(self.seed)
        fold_of = np.empty(n, dtype=np.int64)
        # Deal each class's shuffled utterances round-robin, continuing the rotation across classes,
        # so every fold gets each class in proportion and fold sizes differ by at most one.
        start = 0
        for lab in sorted(set(labels.tolist())):
            idx = rng.permutation(np.flatnonzero(labels == lab))
            fold_of[idx] = (start + np.arange(len(idx))) % self.k
            start += len(idx)
        return [_fold(fold_of == j, speakers) for j in range(self.k)]


class FewShot(Protocol):
    """``fewshot:K``: few-shot enrolment on each held-out corpus (when there are several; else each
    held-out speaker), K support clips per class, the rest scored, over ``episodes`` seeded episodes.

    Its folds are ``loco``'s (or ``loso``'s); the episodes are run by :mod:`serkit.evaluation.fewshot`.
    """

    #: episodes when none are asked for
    EPISODES = 10

    def __init__(self, k: int, episodes: int = EPISODES, seed: int = 0):
        self.k = int(k)
        self.episodes = int(episodes)
        self.seed = int(seed)
        if self.k < 1:
            raise ConfigError(f"fewshot:{k}: K (support clips per class) must be at least 1; e.g. 'fewshot:5'")
        if self.episodes < 1:
            raise ConfigError(f"fewshot needs at least 1 episode, got {episodes}; e.g. --episodes 10")

    @property
    def name(self) -> str:
        return f"fewshot:{self.k}"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "shots": self.k, "episodes": self.episodes, "seed": self.seed}

    def folds(self, utterances: Sequence) -> list[Fold]:
        _require_utterances(utterances, self.name)
        several = len({str(u.corpus) for u in utterances}) >= 2
        return (LeaveOneCorpusOut() if several else LeaveOneSpeakerOut()).folds(utterances)


def parse_protocol(spec, *, seed: int = 0) -> Protocol:
    """Turn a protocol string into a :class:`Protocol` (a ``Protocol`` is returned unchanged).

    Parameters
    ----------
    spec : str or Protocol
        ``"loso"`` — leave one speaker out; ``"loco"`` — leave one corpus out; ``"speaker-kfold:K"`` — K folds of disjoint speakers;
        ``"holdout:SPK1,SPK2"`` — the named speakers are the test set; ``"random-split:K"`` —
        utterance-level stratified K-fold (speaker-dependent: reports are marked so); ``"fewshot:K"`` —
        K-shot enrolment on each held-out corpus or speaker (:class:`FewShot`).
    seed : int
        Seed of the shuffles in ``speaker-kfold`` and ``random-split``.

    Examples
    --------
    >>> parse_protocol("speaker-kfold:5").name
    'speaker-kfold:5'
    >>> parse_protocol("random-split:5").speaker_independent
    False
    """
    if isinstance(spec, Protocol):
        return spec
    if not isinstance(spec, str):
        raise ConfigError(f"protocol must be a string such as 'loso', got {spec!r}; valid: {', '.join(PROTOCOLS)}")
    name, _, arg = spec.strip().partition(":")
    name, arg = name.strip().lower(), arg.strip()

    def k_of() -> int:
        try:
            return int(arg)
        except ValueError:
            raise ConfigError(f"protocol {spec!r}: K must be an integer, e.g. '{name}:5'") from None

    if name in ("loso", "leave-one-speaker-out"):
        if arg:
            raise ConfigError(f"protocol {spec!r}: 'loso' takes no argument; write 'loso'")
        return LeaveOneSpeakerOut()
    if name in ("loco", "leave-one-corpus-out"):
        if arg:
            raise ConfigError(f"protocol {spec!r}: 'loco' takes no argument; write 'loco'")
        return LeaveOneCorpusOut()
    if name == "speaker-kfold":
        return SpeakerKFold(k_of(), seed=seed)
    if name == "holdout":
        speakers = [s.strip() for s in arg.split(",") if s.strip()]
        if not speakers:
            raise ConfigError(f"protocol {spec!r}: name the test speakers, e.g. 'holdout:spk03,spk07'")
        return Holdout(speakers)
    if name == "random-split":
        return RandomSplit(k_of(), seed=seed)
    if name == "fewshot":
        return FewShot(k_of(), seed=seed)
    raise ConfigError(
        f"unknown evaluation protocol {spec!r}; valid: {', '.join(PROTOCOLS)} "
        "(random-split is speaker-dependent and must be asked for by name)"
    )


# -- validation split (early stopping / model selection inside a training set) ------------------
def validation_split(utterances: Sequence, fraction: float = 0.15, seed: int = 0) -> Split:
    """Hold out whole *training* speakers for early stopping, so validation mimics unseen speakers.

    The utterance form of :func:`serkit.training.split.speaker_split` (the one implementation,
    which the trainer calls with arrays).

    Parameters
    ----------
    utterances : sequence of Utterance
        The training utterances of one fold (never the test ones).
    fraction : float
        Target share of utterances for validation, ``0 < fraction < 1``. Speakers are taken in a
        seeded random order until the share is reached (at least one speaker; at least one left to train).
    seed : int
        Seed of the speaker (or utterance) shuffle.

    Returns
    -------
    Split
        ``(train_idx, val_idx, val_speakers, by_speaker)``. With a single training speaker the split
        falls back to a label-stratified utterance split and ``by_speaker`` is ``False``, so callers can
        say that validation scores are speaker-dependent.
    """
    return speaker_split([u.speaker for u in utterances], [u.label for u in utterances], fraction, seed)

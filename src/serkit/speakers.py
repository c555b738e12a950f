"""Per-speaker standardisation — serkit's central idea — in one module.

A speaker's utterances are standardised with that speaker's own statistics (mean and standard
deviation per dimension), computed from its unlabelled utterances; at test time from the test
speaker's audio, which needs no labels and so keeps an evaluation speaker-independent. In recipes
and reports this is ``normalisation: speaker``; ``adapt=True`` asks a model for it at prediction.

The same rules serve every family — feature models (numpy feature matrices), the neural trainer
and networks (torch pooled vectors) and fusion (fused log-probabilities):

* a speaker with fewer than :data:`MIN_SPEAKER_UTTERANCES` utterances (or no speaker information)
  gets the training set's global statistics instead of its own;
* a speaker's standard deviation is floored at a fraction of the global standard deviation
  (per dimension), so a dimension (nearly) constant for one speaker is not blown up into noise.
  The fraction was chosen by measurement for each kind of representation:
  :data:`STD_FLOOR` = 0.1 for learned network vectors (a channel dead on the training set once gave
  a test speaker values of ±50 and a UA of 0.19), :data:`FEATURE_STD_FLOOR` = 0 for hand-crafted
  feature sets. On EmoDB, egemaps-svm with a floor of 0.1 instead of 0 scores UA 0.723 instead of
  0.721 on ``speaker-kfold:5`` (0.719–0.725 for floors 0.01–0.3: noise) but 0.728 instead of
  0.742 on ``loso`` (eGeMAPS dimension 71 has a speaker std of 0.1–0.2 % of the global one for
  every speaker, and standardising it per speaker is worth something there), so feature models
  keep their numbers with no floor beyond the constant-dimension rule;
* a global standard deviation at or below :data:`CONSTANT_STD` (a constant dimension) counts as 1.

**Voice groups** stand in for speakers when no speaker ids are known (``serkit adapt --adapt-method
voices``): a target's clips are clustered by their GE2E speaker-encoder embeddings
(:func:`voice_groups`, k-means on unit vectors) and each group is standardised like one speaker
(:func:`group_stats`, the same statistics and floors as a speaker's); a new clip joins the group of
the nearest centroid (:func:`nearest_voice`).

**Adapting given an emotion mix** (the robust rule's adapted part, for feature models): a speaker
whose clips are all angry has angry statistics, and standardising by them subtracts the anger.
Given the speaker's emotion mix (estimated from its single-clip predictions) and the training
classes' mean and variance in speaker-standardised units (:func:`class_stats`), the speaker is
standardised so that its rows have the mean and spread a training speaker's rows of that mix had
(:func:`speaker_stats` with ``emotion_mix``); an even mix changes nothing.

Functions take numpy arrays, or torch tensors (then they compute in torch, on the tensor's device
and dtype); torch is never imported here, so the module loads without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "MIN_SPEAKER_UTTERANCES",
    "STD_FLOOR",
    "FEATURE_STD_FLOOR",
    "CONSTANT_STD",
    "global_stats",
    "speaker_stats",
    "speaker_standardise",
    "class_stats",
    "MIX_VARIANCE_FLOOR",
    "centre_speakers",
    "VOICE_GROUPS",
    "voice_groups",
    "nearest_voice",
    "group_stats",
    "ADAPT_RULES",
    "ROBUST_ADAPTATION",
    "one_sidedness",
    "adaptation_weights",
    "robust_mix",
]

#: A speaker needs at least this many utterances for its own statistics; fewer → global statistics.
MIN_SPEAKER_UTTERANCES = 10

#: A speaker's std is floored at this fraction of the global std (per dimension) — networks' pooled vectors.
STD_FLOOR = 0.1

#: The same floor for hand-crafted feature sets (feature models): measured, none is better there.
FEATURE_STD_FLOOR = 0.0

#: A global std at or below this marks a constant dimension; it is replaced by 1.
CONSTANT_STD = 1e-8

#: The least variance (in speaker-standardised units) an emotion mix may imply for a dimension
#: (:func:`speaker_stats` with ``emotion_mix``): a mix whose classes barely vary there does not
#: inflate the speaker's spread more than √20-fold.
MIX_VARIANCE_FLOOR = 0.05


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _std(x):
    """Population standard deviation over rows (numpy or torch)."""
    return x.std(0, unbiased=False) if _is_torch(x) else x.std(axis=0)


def _where_constant(sd):
    """``sd`` with dimensions at or below :data:`CONSTANT_STD` set to 1."""
    if _is_torch(sd):
        import torch

        return torch.where(sd > CONSTANT_STD, sd, torch.ones_like(sd))
    return np.where(sd > CONSTANT_STD, sd, 1.0)


def _maximum(a, b):
    if _is_torch(a):
        import torch

        return torch.maximum(a, b)
    return np.maximum(a, b)


def _speaker_rows(speakers, n: int, min_utterances: int) -> list[np.ndarray]:
    """Row indices of every speaker that has at least ``min_utterances`` rows (sorted by speaker)."""
    speakers = np.asarray([str(s) for s in speakers])
    if len(speakers) != n:
        from .errors import ConfigError

        raise ConfigError(f"got {len(speakers)} speakers for {n} rows; pass one speaker id per utterance")
    groups = []
    for s in np.unique(speakers):
        rows = np.flatnonzero(speakers == s)
        if len(rows) >= min_utterances:
            groups.append(rows)
    return groups


def global_stats(x):
    """``(mean, std)`` [shape=(d,)] over the rows of ``x`` [shape=(n, d)]; constant dimensions get std 1.

    >>> m, s = global_stats(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> m.tolist(), s.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    """
    return x.mean(0), _where_constant(_std(x))


def speaker_stats(
    x,
    speakers: Sequence[str] | None,
    global_mean,
    global_std,
    min_utterances: int = MIN_SPEAKER_UTTERANCES,
    floor: float | None = None,
    *,
    emotion_mix=None,
    class_stats=None,
):
    """Per-row ``(mean, std)`` [shape=(n, d)]: each row gets its speaker's statistics over ``x``.

    Parameters
    ----------
    x : ndarray or torch.Tensor [shape=(n, d)]
        Features (or pooled vectors) of the utterances, one row each.
    speakers : sequence of str, or None
        The speaker of every row. ``None``: no adaptation, every row gets the global statistics.
    global_mean, global_std : [shape=(d,)]
        The training set's statistics (see :func:`global_stats`).
    min_utterances : int
        Speakers with fewer rows get the global statistics.
    floor : float, optional
        A speaker's std is at least ``floor`` × ``global_std`` (default :data:`STD_FLOOR`).
    emotion_mix : ndarray [shape=(n, c)], optional
        Each row's estimated class probabilities (numpy only). A speaker's emotion mix is the mean of
        its rows'; its statistics are then the ones under which its rows, standardised, have the mean
        and spread that training speakers' rows of that mix had — ``class_stats`` (:func:`class_stats`:
        per class, the mean ``μ_k`` and variance ``v_k`` of the training set's speaker-standardised
        rows). With mix ``π``, the expected standardised mean is ``m = Σ π_k μ_k`` and variance
        ``Σ π_k (v_k + μ_k²) − m²`` (floored at :data:`MIX_VARIANCE_FLOOR`); the speaker's std is
        divided by the square root of that variance and its mean moved back by ``std · m``. A speaker
        whose clips are all angry (and are predicted so) keeps the anger that its own mean would
        subtract; a speaker whose mix is the training set's is standardised as without the mix.
    """
    n = x.shape[0]
    floor = STD_FLOOR if floor is None else float(floor)
    if _is_torch(x):
        global_mean, global_std = global_mean.to(x), global_std.to(x)
        mean, std = global_mean.expand(n, -1).clone(), global_std.expand(n, -1).clone()
    else:
        global_mean, global_std = np.asarray(global_mean, dtype=np.float64), np.asarray(global_std, dtype=np.float64)
        mean = np.broadcast_to(global_mean, x.shape).astype(np.float64)
        std = np.broadcast_to(global_std, x.shape).astype(np.float64)
    if speakers is None:
        return mean, std
    if emotion_mix is not None and _is_torch(x):
        from .errors import ConfigError

        raise ConfigError("an emotion mix is applied to numpy features only")
    lowest = floor * global_std
    mix = None if emotion_mix is None else np.asarray(emotion_mix, dtype=np.float64)
    for rows in _speaker_rows(speakers, n, min_utterances):
        if _is_torch(x):
            import torch

            rows = torch.as_tensor(rows)
        mu, sd = x[rows].mean(0), _maximum(_where_constant(_std(x[rows])), lowest)
        if mix is not None:
            mu, sd = _given_mix(mu, sd, mix[rows].mean(0), class_stats, lowest)
        mean[rows], std[rows] = mu, sd
    return mean, std


def _given_mix(mu, sd, mix: np.ndarray, class_stats, lowest):
    """A speaker's ``(mean, std)`` moved so that its standardised rows have the mean and variance that
    training speakers' rows of emotion mix ``mix`` had (see :func:`speaker_stats`)."""
    if class_stats is None:
        from .errors import ConfigError

        raise ConfigError("an emotion mix needs the training set's class statistics (class_stats)")
    means, variances = (np.asarray(a, dtype=np.float64) for a in class_stats)
    if mix.shape != (means.shape[0],):
        from .errors import ConfigError

        raise ConfigError(f"an emotion mix over {mix.shape[-1]} classes for class statistics of {means.shape[0]}")
    pi = np.clip(mix, 0.0, None)
    pi = pi / max(float(pi.sum()), 1e-12)
    m = pi @ means
    var = np.maximum(pi @ (variances + means**2) - m**2, MIX_VARIANCE_FLOOR)
    sd = np.maximum(sd / np.sqrt(var), lowest)
    return mu - sd * m, sd


def class_stats(z, labels, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(means, variances)`` [shape=(n_labels, d)] of the rows of ``z`` (speaker-standardised
    training rows, [shape=(n, d)]) of each class (``labels``: class index per row); a class without
    rows gets mean 0 and variance 1. What :func:`speaker_stats` needs for an ``emotion_mix``.

    >>> m, v = class_stats(np.array([[-1.0], [-3.0], [2.0]]), [0, 0, 1], 2)
    >>> m.ravel().tolist(), v.ravel().tolist()
    ([-2.0, 2.0], [1.0, 0.0])
    """
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels)
    means, variances = np.zeros((n_labels, z.shape[1])), np.ones((n_labels, z.shape[1]))
    for k in range(n_labels):
        rows = labels == k
        if rows.any():
            means[k], variances[k] = z[rows].mean(0), z[rows].var(0)
    return means, variances


def speaker_standardise(
    x,
    speakers: Sequence[str] | None,
    global_mean,
    global_std,
    *,
    min_utterances: int = MIN_SPEAKER_UTTERANCES,
    floor: float | None = None,
    emotion_mix=None,
    class_stats=None,
):
    """``x`` [shape=(n, d)] standardised per speaker (see :func:`speaker_stats`, also for
    ``emotion_mix`` and ``class_stats``); float64 for numpy input.

    >>> x = np.array([[0.0], [2.0], [10.0], [14.0]])
    >>> speaker_standardise(x, ["a", "a", "b", "b"], np.array([6.5]), np.array([5.0]), min_utterances=2).ravel().tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    if not _is_torch(x):
        x = np.asarray(x, dtype=np.float64)
    mean, std = speaker_stats(
        x,
        speakers,
        global_mean,
        global_std,
        min_utterances=min_utterances,
        floor=floor,
        emotion_mix=emotion_mix,
        class_stats=class_stats,
    )
    return (x - mean) / std


def centre_speakers(z, speakers: Sequence[str], *, min_utterances: int = MIN_SPEAKER_UTTERANCES) -> np.ndarray:
    """``z`` [shape=(n, c)] minus, row by row, the mean of its speaker's rows (speakers with at least
    ``min_utterances`` rows; the others' rows are returned as they are). Used on fused scores, where
    a speaker's bias towards one class is removed but the scale is kept.

    >>> centre_speakers(np.array([[1.0, 3.0], [3.0, 3.0]]), ["a", "a"], min_utterances=2).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    z = np.array(z, dtype=np.float64)
    for rows in _speaker_rows(speakers, len(z), min_utterances):
        z[rows] -= z[rows].mean(axis=0)
    return z


#: Voice groups a target's clips are clustered into (:func:`voice_groups`). Chosen with the
#: self-training settings (:data:`serkit.domain.SELF_TRAIN_FRACTION`) by inner leave-one-corpus-out
#: over the seven corpora (``benchmarks/voices.py``: a model trained without corpora {i, j},
#: adapted to j's unlabelled audio, scored on j): 1, 2 or 3 groups, with and without self-training;
#: 3 groups with self-training had the best mean inner UA.
VOICE_GROUPS = 3


def _unit(e: np.ndarray) -> np.ndarray:
    e = np.nan_to_num(np.asarray(e, dtype=np.float64))
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def nearest_voice(embeddings, centroids) -> np.ndarray:
    """Index [shape=(n,)] of the centroid (unit vectors, [shape=(k, d)]) nearest each embedding, by cosine."""
    return np.argmax(_unit(embeddings) @ np.asarray(centroids, dtype=np.float64).T, axis=1)


def voice_groups(
    embeddings, k: int = VOICE_GROUPS, *, min_utterances: int = MIN_SPEAKER_UTTERANCES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster clips by voice: ``(group of each row [shape=(n,)], unit centroids [shape=(k', d)])``.

    k-means (10 starts, seeded) on the unit-length ``embeddings`` (speaker-encoder vectors, one row
    a clip); rows join the centroid nearest by cosine. Fewer groups are taken while one would have
    fewer than ``min_utterances`` clips (what a speaker needs for its own statistics), down to one
    group of every clip.

    >>> e = np.array([[1.0, 0.1], [1.0, -0.1], [0.1, 1.0], [-0.1, 1.0]])
    >>> groups, centroids = voice_groups(e, 2, min_utterances=2)
    >>> groups.tolist(), centroids.shape
    ([0, 0, 1, 1], (2, 2))
    """
    from sklearn.cluster import KMeans

    e = _unit(embeddings)
    for kk in range(min(int(k), len(e) // max(1, min_utterances)), 1, -1):
        km = KMeans(kk, n_init=10, random_state=seed).fit(e)
        order = np.argsort([np.flatnonzero(km.labels_ == g)[0] for g in range(kk)])  # groups in order of first row
        centroids = _unit(km.cluster_centers_[order])
        groups = nearest_voice(e, centroids)
        if np.bincount(groups, minlength=kk).min() >= min_utterances:
            return groups, centroids
    return np.zeros(len(e), dtype=int), _unit(e.mean(axis=0, keepdims=True))


def group_stats(x, groups, n_groups: int, global_mean, global_std, *, floor: float | None = None):
    """``(mean, std)`` [shape=(n_groups, d)] of each group of rows, as :func:`speaker_stats` gives a
    speaker's (same floor and constant-dimension rules); a group with no rows gets the global ones."""
    x = np.asarray(x, dtype=np.float64)
    groups = np.asarray(groups, dtype=int)
    mean, std = speaker_stats(x, groups.astype(str), global_mean, global_std, min_utterances=1, floor=floor)
    out_m = np.tile(np.asarray(global_mean, dtype=np.float64), (n_groups, 1))
    out_s = np.tile(np.asarray(global_std, dtype=np.float64), (n_groups, 1))
    for g in range(n_groups):
        rows = np.flatnonzero(groups == g)
        if len(rows):
            out_m[g], out_s[g] = mean[rows[0]], std[rows[0]]
    return out_m, out_s


#: How an adapted prediction is made (``adapt_rule``, :meth:`serkit.models.Classifier.set_adapt_rule`):
#: ``full`` — each speaker standardised with its own statistics, as it is; ``robust`` — per speaker,
#: the adapted probabilities mixed with the single-utterance ones by :func:`adaptation_weights`, the
#: adapted ones (feature models) standardised given the speaker's emotion mix as the single-utterance
#: ones estimate it (:func:`speaker_stats` with ``emotion_mix``).
ADAPT_RULES = ("full", "robust")

#: The robust rule's thresholds on :func:`one_sidedness` (a speaker at or below ``low`` is fully
#: adapted, at or above ``high`` not at all, linearly between), on the family's uncalibrated
#: probabilities. Chosen on the seven leave-one-corpus-out folds of the ``default`` recipe together
#: (``benchmarks/onesided.py``: the best mean UA over real, one-emotion and two-emotion speakers,
#: adapted given the emotion mix); chosen per fold without the held-out corpus they were 0.2–0.3 /
#: 0.6–0.7. (Before adapting given the mix, 2026-12-03: 0.15 / 0.6.)
ROBUST_ADAPTATION = {"low": 0.2, "high": 0.7}


def one_sidedness(single_proba, speakers, *, min_utterances: int = MIN_SPEAKER_UTTERANCES) -> np.ndarray:
    """How one-sided each row's speaker looks [shape=(n,), 0…1], from its single-utterance probabilities.

    One minus the normalised entropy of the speaker's mean single-utterance probabilities
    (``adapt=False``): 0 when the clips' predictions together cover every class evenly (a speaker
    whose clips span the emotions), 1 when all of them put everything on one class (a speaker
    angry in every clip). Measured (``benchmarks/onesided.py``) it separates one-emotion speakers
    from real ones better than the mean top probability, the share of the most-voted class or the
    spread of the clips' predictions. Rows of speakers with fewer than ``min_utterances`` clips get 0
    (they are not adapted anyway).

    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    >>> one_sidedness(p, ["a", "a", "b", "b"], min_utterances=2).round(3).tolist()
    [0.531, 0.531, 0.0, 0.0]
    """
    p = np.asarray(single_proba, dtype=np.float64)
    out = np.zeros(len(p))
    if not len(p) or p.shape[1] < 2:
        return out
    for rows in _speaker_rows(speakers, len(p), min_utterances):
        m = np.clip(p[rows].mean(axis=0), 1e-12, None)
        m = m / m.sum()
        out[rows] = 1.0 + float((m * np.log(m)).sum()) / np.log(p.shape[1])
    return out


def adaptation_weights(
    single_proba,
    speakers,
    *,
    low: float | None = None,
    high: float | None = None,
    min_utterances: int = MIN_SPEAKER_UTTERANCES,
) -> np.ndarray:
    """The weight [shape=(n,), 0…1] of each row's adapted prediction in the robust rule.

    1 for a speaker whose :func:`one_sidedness` is at most ``low``, 0 at ``high`` or above, linear
    between (defaults: :data:`ROBUST_ADAPTATION`).

    >>> p = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
    >>> adaptation_weights(p, ["a", "a", "b", "b"], low=0.1, high=0.5, min_utterances=2).round(2).tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    low = ROBUST_ADAPTATION["low"] if low is None else float(low)
    high = ROBUST_ADAPTATION["high"] if high is None else float(high)
    if not high > low:
        from .errors import ConfigError

        raise ConfigError(f"the robust rule needs low < high; got low={low}, high={high}")
    s = one_sidedness(single_proba, speakers, min_utterances=min_utterances)
    return np.clip((high - s) / (high - low), 0.0, 1.0)


def robust_mix(single_proba, adapted_proba, speakers, **rule) -> np.ndarray:
    """``w · adapted + (1 − w) · single`` row by row, ``w`` from :func:`adaptation_weights` (``rule``: its
    ``low``, ``high``, ``min_utterances``) of ``single_proba``: the robust rule's probabilities
    [shape=(n, c)]. The :class:`~serkit.models.Classifier` contract mixes uncalibrated probabilities
    (so a temperature does not move the thresholds) and calibrates the mix.

    >>> s = np.array([[0.9, 0.1], [0.9, 0.1]]); a = np.array([[0.2, 0.8], [0.6, 0.4]])
    >>> robust_mix(s, a, ["x", "x"], low=0.2, high=0.5, min_utterances=2).tolist()
    [[0.9, 0.1], [0.9, 0.1]]
    """
    single = np.asarray(single_proba, dtype=np.float64)
    w = adaptation_weights(single, speakers, **rule)[:, None]
    return w * np.asarray(adapted_proba, dtype=np.float64) + (1.0 - w) * single

"""Prototype maths of few-shot enrolment (prototypical networks, Snell et al. 2017), numpy only.

A class prototype is the mean embedding of that class's support clips. A clip's prototype
log-probabilities are ``log_softmax(-d² / (SCALE * dim))`` over its squared distances ``d²`` to the
prototypes, each dimension divided by the support's pooled within-class variance (a diagonal
Mahalanobis distance; the variance shrunk towards 1 by ``SHRINK``, see :func:`pooled_variance`).
The embeddings live in a standardised space (feature rows standardised with training statistics,
a network's batch-normed pooled vector), so a variance of 1 is the training set's and ``d²`` grows
with the dimension. With one clip per class there is no within-class variance: Euclidean
distances. The enrolled model's probabilities over the union of the base model's classes and the
support set's are a geometric mix

    log p(c) ∝ (ALPHA * log p_base(c) + (1 - ALPHA) * log q_proto(c)) / T

with ``T = TEMPERATURE`` (``ONE_SHOT_TEMPERATURE`` with one clip per class); ``T`` only softens the
probabilities, it never changes a decision. A class only one side knows gets that side's term
and, for the other side, the mean of that side's log-probabilities over its own classes on the
same clip (no opinion either way): a class the base model never had (``calm``, ``surprise``) is
added, a base class the support set lacks is kept from the base model (its probabilities come
from the base term alone), a class both know is re-centred on the new domain by its prototype.

**How the rule was chosen** (``benchmarks/fewshot_rule.py``), on the default model's training
corpora only — EmoDB, TESS, RAVDESS sample, 6 classes: the ``default`` recipe trained on one
corpus and enrolled on another (all 6 ordered pairs), 5 seeded episodes of K support clips per
class from the target corpus, the rest of it scored from single utterances; the score is the mean
UA over K = 1, 5, 10, 20 (K = 20 only where every class has more than 20 clips). Zero-shot (ALPHA
= 1) scores 0.277. Euclidean prototypes: ALPHA 0 → 0.502, ALPHA 0.25 → 0.505 at SCALE 0.2
(SCALE 0.05 … 5 for ALPHA 0.25 … 0.75: smaller scales, i.e. more weight on the prototypes, won).
Dividing by the within-class variance gained 12 points: at SCALE 0.2, SHRINK 0.05 / 0.01 with
ALPHA 0 → 0.623 / 0.626, ALPHA 0.1 → 0.626 / **0.628** (per K: 0.380, 0.615, 0.699, 0.818),
ALPHA 0.25 → 0.595 / 0.599. ALPHA 0.1 rather than 0 also keeps base-only classes meaningful.
Then the temperature by the negative log-likelihood of the true class (the UA is unchanged):
K ≥ 5, T 0.5 / 1 / 2 / 4 → mean NLL over K = 5, 10, 20 of 1.010 / **0.839** / 0.975 / 1.238;
K = 1 (Euclidean), T 1 / 16 / 64 / 256 → 7.33 / 3.13 / 2.21 / **1.83** (log 6 = 1.79: one-shot
probabilities are hardly better than uniform, so they are made nearly as soft). :data:`MEASURED`
keeps these numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ALPHA",
    "SCALE",
    "TEMPERATURE",
    "ONE_SHOT_TEMPERATURE",
    "SHRINK",
    "MEASURED",
    "class_prototypes",
    "pooled_variance",
    "fit_prototypes",
    "squared_distances",
    "prototype_log_proba",
    "combine",
    "enrolled_proba",
    "rule_temperature",
    "sample_support",
]

#: weight of the base model's log-probabilities in the mix (0: prototypes only); see the module docstring
ALPHA = 0.1
#: per-dimension scale of the squared distances (``s = SCALE * dim``); see the module docstring
SCALE = 0.2
#: shrinkage of the support's within-class variance towards 1 (:func:`pooled_variance`); see the module docstring
SHRINK = 0.01
#: softening of the mixed log-probabilities (chosen by NLL after ALPHA and SCALE by UA); see the module docstring
TEMPERATURE = 1.0
#: the same for one clip per class (no within-class variance: Euclidean distances, far sharper)
ONE_SHOT_TEMPERATURE = 256.0
#: the measurement behind the rule (module docstring): mean UA over the 6 train→target corpus pairs, NLL per T
MEASURED: dict = {
    "zero_shot_ua": 0.277,
    "ua": {
        "euclidean alpha=0": 0.502,
        "euclidean alpha=0.25 scale=0.2": 0.505,
        "variance shrink=0.01 alpha=0": 0.626,
        "variance shrink=0.01 alpha=0.1 scale=0.2": 0.628,
        "variance shrink=0.01 alpha=0.25 scale=0.2": 0.599,
    },
    "ua_per_k": {"1": 0.380, "5": 0.615, "10": 0.699, "20": 0.818},
    "nll_k_ge_5": {"0.5": 1.010, "1": 0.839, "2": 0.975, "4": 1.238},
    "nll_k_1": {"1": 7.328, "16": 3.126, "64": 2.210, "256": 1.829},
}

_EPS = 1e-12


def class_prototypes(embeddings: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The sorted classes and their prototypes [shape=(n_classes, d)]: the mean embedding of each class."""
    x = np.asarray(embeddings, dtype=np.float64)
    labels = [str(lab) for lab in labels]
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"embeddings of shape {x.shape} for {len(labels)} labels; pass [n, d] and one label per row")
    classes = sorted(set(labels))
    y = np.array([classes.index(lab) for lab in labels])
    return classes, np.stack([x[y == c].mean(axis=0) for c in range(len(classes))])


def pooled_variance(
    embeddings: np.ndarray, labels: Sequence[str], prototypes: np.ndarray, classes: Sequence[str], *, shrink: float
) -> np.ndarray | None:
    """[shape=(d,)] per-dimension within-class variance of the support clips around their prototypes,
    shrunk towards 1 (the training set's variance of a standardised embedding): ``shrink * 1 + (1 -
    shrink) * w``. With no degree of freedom left (one clip per class) there is none: ``None``
    (Euclidean distances, :data:`ONE_SHOT_TEMPERATURE`)."""
    x = np.asarray(embeddings, dtype=np.float64)
    p = np.asarray(prototypes, dtype=np.float64)
    classes = [str(c) for c in classes]
    dof = len(x) - len(classes)
    if dof < 1:
        return None
    y = np.array([classes.index(str(lab)) for lab in labels])
    within = ((x - p[y]) ** 2).sum(axis=0) / dof
    return float(shrink) + (1.0 - float(shrink)) * within


def fit_prototypes(
    embeddings: np.ndarray, labels: Sequence[str], *, shrink: float = SHRINK
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """What enrolment learns from the support clips: ``(classes, prototypes [c, d], variance [d] or None)``."""
    classes, prototypes = class_prototypes(embeddings, labels)
    return classes, prototypes, pooled_variance(embeddings, labels, prototypes, classes, shrink=shrink)


def squared_distances(x: np.ndarray, prototypes: np.ndarray, variance: np.ndarray | None = None) -> np.ndarray:
    """[shape=(n, n_classes)] squared distances of the rows of ``x`` to the prototypes, each dimension
    divided by ``variance`` when given (a diagonal Mahalanobis distance), else Euclidean."""
    x = np.asarray(x, dtype=np.float64)
    p = np.asarray(prototypes, dtype=np.float64)
    if variance is not None:
        scale = 1.0 / np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 1e-12))
        x, p = x * scale, p * scale
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ p.T + (p * p).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def prototype_log_proba(
    x: np.ndarray, prototypes: np.ndarray, *, scale: float = SCALE, variance: np.ndarray | None = None
) -> np.ndarray:
    """[shape=(n, n_classes)] ``log_softmax(-d² / (scale * dim))`` over the prototypes (``variance``: see
    :func:`squared_distances`)."""
    p = np.asarray(prototypes, dtype=np.float64)
    return _log_softmax(-squared_distances(x, p, variance) / (float(scale) * max(p.shape[1], 1)))


def combine(
    base_proba: np.ndarray,
    base_labels: Sequence[str],
    proto_log_proba: np.ndarray,
    proto_labels: Sequence[str],
    *,
    alpha: float = ALPHA,
    temperature: float = TEMPERATURE,
) -> tuple[list[str], np.ndarray]:
    """The geometric mix of the module docstring over the union of the classes.

    Returns the labels (sorted union) and probabilities [shape=(n, n_labels)], rows summing to 1.
    """
    base_labels, proto_labels = [str(c) for c in base_labels], [str(c) for c in proto_labels]
    labels = sorted(set(base_labels) | set(proto_labels))
    n = len(proto_log_proba) if base_proba is None else len(base_proba)

    def spread(logp, own):
        out = np.repeat(logp.mean(axis=1, keepdims=True), len(labels), axis=1)  # no opinion: its mean
        out[:, [labels.index(c) for c in own]] = logp
        return out

    q = spread(np.asarray(proto_log_proba, dtype=np.float64).reshape(n, len(proto_labels)), proto_labels)
    if alpha == 0 or base_proba is None:
        z = q
    else:
        b = np.log(np.clip(np.asarray(base_proba, dtype=np.float64), _EPS, 1.0)).reshape(n, len(base_labels))
        z = float(alpha) * spread(b, base_labels) + (1.0 - float(alpha)) * q
    return labels, np.exp(_log_softmax(z / float(temperature)))


def enrolled_proba(
    base_proba: np.ndarray | None,
    base_labels: Sequence[str],
    embeddings: np.ndarray,
    prototypes: np.ndarray,
    proto_labels: Sequence[str],
    *,
    alpha: float = ALPHA,
    scale: float = SCALE,
    temperature: float | None = None,
    variance: np.ndarray | None = None,
) -> tuple[list[str], np.ndarray]:
    """What an enrolled model predicts: :func:`prototype_log_proba` mixed with the base by :func:`combine`.

    ``temperature`` ``None``: :data:`TEMPERATURE` with a ``variance``, :data:`ONE_SHOT_TEMPERATURE` without.
    """
    if temperature is None:
        temperature = rule_temperature(variance)
    q = prototype_log_proba(embeddings, prototypes, scale=scale, variance=variance)
    return combine(base_proba, base_labels, q, proto_labels, alpha=alpha, temperature=temperature)


def rule_temperature(variance) -> float:
    """The temperature of the rule: :data:`TEMPERATURE` with a support variance, else :data:`ONE_SHOT_TEMPERATURE`."""
    return TEMPERATURE if variance is not None else ONE_SHOT_TEMPERATURE


def sample_support(labels: Sequence[str], shots: int | None, seed: int = 0) -> np.ndarray:
    """Indices of ``shots`` items per class (seeded, sorted); ``None``: every item.

    Raises ``ValueError`` naming the classes with fewer than ``shots`` items.
    """
    labels = np.array([str(lab) for lab in labels], dtype=object)
    if shots is None:
        return np.arange(len(labels))
    shots = int(shots)
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    classes = sorted(set(labels.tolist()))
    short = {c: int((labels == c).sum()) for c in classes if (labels == c).sum() < shots}
    if short:
        have = ", ".join(f"{c!r} has {n}" for c, n in short.items())
        raise ValueError(f"{shots} clips per class asked for, but {have}")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=shots, replace=False) for c in classes]
    return np.sort(np.concatenate(picked))

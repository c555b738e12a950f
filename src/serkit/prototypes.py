"""Prototype maths of few-shot enrolment (prototypical networks, Snell et al. 2017), numpy only.

A class prototype is the mean embedding of that class's support clips. A clip's prototype
log-probabilities are ``log_softmax(-d² / (SCALE * dim))`` over its squared distances ``d²`` to the
prototypes: the Mahalanobis distance of the support's shrunk within-class covariance — each
dimension divided by its pooled within-class variance (shrunk towards 1 by ``SHRINK``, see
:func:`pooled_variance`), then in that space the covariance ``COV_SHRINK * I + (1 - COV_SHRINK) *
RᵀR / dof`` of the support clips' residuals ``R`` around their prototypes (see
:func:`squared_distances`; computed in the span of the residuals, so a few hundred support clips
in 2 000 dimensions cost little). The embeddings live in a standardised space (feature rows
standardised with training statistics, a network's batch-normed pooled vector), so a variance of
1 is the training set's. With one clip per class there is no within-class spread: Euclidean
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
= 1) scores 0.277. Euclidean prototypes: ALPHA 0 → 0.502, ALPHA 0.25 → 0.505 at SCALE 0.2 (for
ALPHA 0.25 … 0.75 the smaller of SCALE 0.05 … 5, i.e. more weight on the prototypes, won).
Per-dimension variances (SHRINK 0.05 / 0.01): ALPHA 0 → 0.623 / 0.626, ALPHA 0.1 → 0.626 / 0.628,
ALPHA 0.25 → 0.595 / 0.599. The full shrunk covariance (SHRINK 0.01, ALPHA 0.1) with COV_SHRINK
1 / 0.2 / 0.05 / 0.01 → 0.628 / 0.749 / **0.751** / 0.751 (per K: 0.380, 0.795, 0.907, 0.923; the
tie broken by NLL, 1.161 against 2.218; ALPHA 0 → 0.750, ALPHA 0.25 → 0.749). ALPHA 0.1 rather than
0 also keeps base-only classes meaningful. Then the temperature by the negative log-likelihood of
the true class (the UA is unchanged): K ≥ 5, T 1 / 2 / 4 / 8 / 16 → mean NLL over K = 5, 10, 20
of 0.938 / 0.583 / **0.485** / 0.602 / 0.875; K = 1 (Euclidean), T 1 / 16 / 64 / 256 → 7.33 /
3.13 / 2.21 / **1.83** (log 6 = 1.79: one-shot probabilities are hardly better than uniform, so
they are made nearly as soft). :data:`MEASURED` keeps these numbers.
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
    "COV_SHRINK",
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
#: shrinkage of the within-class covariance towards the identity in the variance-standardised space
#: (:func:`squared_distances`; 1: diagonal only); see the module docstring
COV_SHRINK = 0.05
#: softening of the mixed log-probabilities (chosen by NLL after ALPHA and SCALE by UA); see the module docstring
TEMPERATURE = 4.0
#: the same for one clip per class (no within-class variance: Euclidean distances, far sharper)
ONE_SHOT_TEMPERATURE = 256.0
#: the measurement behind the rule (module docstring): mean UA over the 6 train→target corpus pairs, NLL per T
MEASURED: dict = {
    "zero_shot_ua": 0.277,
    "ua": {
        "euclidean alpha=0": 0.502,
        "euclidean alpha=0.25 scale=0.2": 0.505,
        "variance shrink=0.01 alpha=0.1": 0.628,
        "covariance shrink=0.01 cov_shrink=0.2 alpha=0.1": 0.749,
        "covariance shrink=0.01 cov_shrink=0.05 alpha=0.1": 0.751,
        "covariance shrink=0.01 cov_shrink=0.01 alpha=0.1": 0.751,
        "covariance shrink=0.01 cov_shrink=0.05 alpha=0": 0.750,
        "covariance shrink=0.01 cov_shrink=0.05 alpha=0.25": 0.749,
    },
    "ua_per_k": {"1": 0.380, "5": 0.795, "10": 0.907, "20": 0.923},
    "nll_k_ge_5": {"1": 0.938, "2": 0.583, "4": 0.485, "8": 0.602, "16": 0.875},
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
) -> tuple[list[str], np.ndarray, np.ndarray | None, np.ndarray | None]:
    """What enrolment learns from the support clips: ``(classes, prototypes [c, d], variance [d],
    residuals [n, d])`` — the residuals are the support clips minus their prototypes, each dimension
    divided by the standard deviation (the low-rank part of the covariance, :func:`squared_distances`);
    variance and residuals are ``None`` with one clip per class."""
    classes, prototypes = class_prototypes(embeddings, labels)
    variance = pooled_variance(embeddings, labels, prototypes, classes, shrink=shrink)
    if variance is None:
        return classes, prototypes, None, None
    y = np.array([classes.index(str(lab)) for lab in labels])
    residuals = (np.asarray(embeddings, dtype=np.float64) - prototypes[y]) / np.sqrt(variance)
    return classes, prototypes, variance, residuals


def _sq(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ p.T + (p * p).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def squared_distances(
    x: np.ndarray,
    prototypes: np.ndarray,
    variance: np.ndarray | None = None,
    residuals: np.ndarray | None = None,
    *,
    cov_shrink: float = COV_SHRINK,
) -> np.ndarray:
    """[shape=(n, n_classes)] squared distances of the rows of ``x`` to the prototypes.

    Euclidean by default; with ``variance`` each dimension is divided by it (a diagonal Mahalanobis
    distance); with ``residuals`` too (:func:`fit_prototypes`), the Mahalanobis distance of the
    shrunk within-class covariance ``cov_shrink * I + (1 - cov_shrink) * RᵀR / dof`` in that
    standardised space (``dof`` = residuals - classes), computed through the Woodbury identity in
    the n-dimensional span of the residuals (n ≪ d).
    """
    x = np.asarray(x, dtype=np.float64)
    p = np.asarray(prototypes, dtype=np.float64)
    if variance is None:
        return _sq(x, p)
    scale = 1.0 / np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 1e-12))
    x, p = x * scale, p * scale
    d = _sq(x, p)
    if residuals is None or cov_shrink >= 1.0:
        return d
    r = np.asarray(residuals, dtype=np.float64)
    dof = max(len(r) - len(p), 1)
    lam = float(cov_shrink)
    m = (lam * dof / (1.0 - lam)) * np.eye(len(r)) + r @ r.T
    chol = np.linalg.cholesky(m)
    a = np.linalg.solve(chol, r @ x.T)  # [n_r, n]
    b = np.linalg.solve(chol, r @ p.T)  # [n_r, c]
    return np.maximum((d - _sq(a.T, b.T)) / lam, 0.0)
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ p.T + (p * p).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def prototype_log_proba(
    x: np.ndarray,
    prototypes: np.ndarray,
    *,
    scale: float = SCALE,
    variance: np.ndarray | None = None,
    residuals: np.ndarray | None = None,
    cov_shrink: float = COV_SHRINK,
) -> np.ndarray:
    """[shape=(n, n_classes)] ``log_softmax(-d² / (scale * dim))`` over the prototypes (``variance``,
    ``residuals``, ``cov_shrink``: see :func:`squared_distances`)."""
    p = np.asarray(prototypes, dtype=np.float64)
    d = squared_distances(x, p, variance, residuals, cov_shrink=cov_shrink)
    return _log_softmax(-d / (float(scale) * max(p.shape[1], 1)))


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
    residuals: np.ndarray | None = None,
    cov_shrink: float = COV_SHRINK,
) -> tuple[list[str], np.ndarray]:
    """What an enrolled model predicts: :func:`prototype_log_proba` mixed with the base by :func:`combine`.

    ``temperature`` ``None``: :data:`TEMPERATURE` with a ``variance``, :data:`ONE_SHOT_TEMPERATURE` without.
    """
    if temperature is None:
        temperature = rule_temperature(variance)
    q = prototype_log_proba(
        embeddings, prototypes, scale=scale, variance=variance, residuals=residuals, cov_shrink=cov_shrink
    )
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

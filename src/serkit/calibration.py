"""How far to trust a probability: calibration metrics, temperature scaling and abstention (numpy only).

``probs`` is always ``[shape=(n, n_classes)]`` rows that sum to 1 and ``y`` the true class index of each
row (``[shape=(n,)]``, integers). Confidence is the top-label probability (the label that would be
predicted). A model is *calibrated* when, among rows predicted with confidence ~p, a share ~p is
right; the expected calibration error (:func:`ece`) measures the gap, temperature scaling
(:func:`fit_temperature`, Guo et al. 2017) closes most of it with one scalar per model, and
:func:`top_label` turns a low-confidence row into :data:`UNCERTAIN` (abstention).
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .metrics import unweighted_accuracy

__all__ = [
    "UNCERTAIN",
    "ECE_BINS",
    "COVERAGE_THRESHOLDS",
    "ece",
    "brier",
    "nll",
    "reliability",
    "fit_temperature",
    "apply_temperature",
    "coverage_table",
    "summary",
    "top_label",
    "check_min_confidence",
]

#: the label of a row whose top probability is below the minimum confidence
UNCERTAIN = "uncertain"
#: equal-width confidence bins of :func:`ece` (the usual 15 of Guo et al. 2017)
ECE_BINS = 15
#: the minimum confidences of the coverage–accuracy table in reports
COVERAGE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
#: the bounded search range of :func:`fit_temperature` (T below 1 sharpens, above 1 softens)
T_RANGE = (0.05, 20.0)
_EPS = 1e-12


def _check(probs, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    if p.ndim != 2 or y.ndim != 1 or len(p) != len(y):
        raise ConfigError(f"probs must be [n, n_classes] and y [n]; got shapes {p.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ConfigError(f"class indices in y must lie in 0..{p.shape[1] - 1}")
    return p, y.astype(np.int64)


def ece(probs, y, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label: ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|``.

    Rows are binned by their top probability in ``n_bins`` equal-width bins over (0, 1] (a bin is
    ``(lo, hi]``); ``nan`` for no rows.
    """
    conf, acc, count = reliability(probs, y, n_bins)
    n = count.sum()
    if n == 0:
        return float("nan")
    keep = count > 0
    return float(np.sum(count[keep] / n * np.abs(acc[keep] - conf[keep])))


def reliability(probs, y, n_bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy and row count (a reliability diagram).

    Returns three ``[shape=(n_bins,)]`` arrays; an empty bin has confidence and accuracy ``nan``.
    """
    p, y = _check(probs, y)
    if n_bins < 1:
        raise ConfigError(f"n_bins must be >= 1, got {n_bins}")
    top = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == y) if len(p) else np.zeros(0, bool)
    # bin b holds (b/n, (b+1)/n]; confidence 0 (impossible for a distribution) falls in the first
    b = np.clip(np.ceil(top * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(b, weights=top, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct.astype(float), minlength=n_bins) / count
    return conf, acc, count


def brier(probs, y) -> float:
    """Multi-class Brier score: mean over rows of ``sum_k (p_k - [y == k])^2`` (0 best, 2 worst)."""
    p, y = _check(probs, y)
    if not len(p):
        return float("nan")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def nll(probs, y) -> float:
    """Mean negative log-likelihood of the true class (natural log; probabilities floored at 1e-12)."""
    p, y = _check(probs, y)
    if not len(p):
        return float("nan")
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], _EPS))))


def _logits(logp_or_probs) -> np.ndarray:
    """Log-probabilities (up to a per-row constant) from probabilities or logits."""
    z = np.asarray(logp_or_probs, dtype=np.float64)
    if z.ndim != 2:
        raise ConfigError(f"expected [n, n_classes] probabilities or log-probabilities, got shape {z.shape}")
    is_probs = z.size and z.min() >= 0 and np.allclose(z.sum(axis=1), 1.0, atol=1e-4)
    if is_probs:
        with np.errstate(divide="ignore"):
            z = np.log(z)  # a class with probability 0 stays at 0 under any temperature
    return z


def _softmax(z: np.ndarray) -> np.ndarray:
    finite = np.where(np.isfinite(z), z, -np.inf)
    m = np.max(finite, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(finite - m)
    s = e.sum(axis=1, keepdims=True)
    return e / np.where(s > 0, s, 1.0)


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: T > 1 softens over-confident probabilities, T < 1 sharpens; T = 1 is the identity.

    Accepts probabilities or log-probabilities/logits (``[shape=(n, n_classes)]``); returns probabilities.
    The argmax (the predicted label) never changes.
    """
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
    return _softmax(_logits(probs) / t)


def fit_temperature(logp_or_probs, y, *, bounds: tuple[float, float] = T_RANGE, tol: float = 1e-4) -> float:
    """The temperature ``T`` that minimises the NLL of ``softmax(log p / T)`` on labelled rows.

    The search is a golden-section search over ``log T`` in ``bounds`` (0.05 … 20 by default):
    the NLL is convex in ``1/T`` (a log-sum-exp of a linear function of it), so it is unimodal in
    ``log T`` and the bounded 1-D search finds its minimum to ``tol`` (relative) without gradients.
    Fit it on held-out predictions — never on the rows it will be judged on.

    Parameters
    ----------
    logp_or_probs : array-like [shape=(n, n_classes)]
        Probabilities (rows summing to 1) or logits / log-probabilities.
    y : array-like [shape=(n,)]
        True class indices.

    Returns
    -------
    float
        ``T > 0``; 1.0 when there are no rows.
    """
    z = _logits(logp_or_probs)
    _, y = _check(np.zeros(z.shape), y)
    if not len(y):
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    if not lo < hi:
        raise ConfigError(f"temperature bounds {bounds} must be increasing and positive")

    def loss(log_t: float) -> float:
        return nll(_softmax(z / np.exp(log_t)), y)

    g = (np.sqrt(5.0) - 1) / 2
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2))


def coverage_table(probs, y, thresholds=COVERAGE_THRESHOLDS) -> list[dict]:
    """Accuracy when rows below a minimum confidence are set aside (labelled :data:`UNCERTAIN`).

    Returns one dict per threshold ``P``: ``min_confidence`` (P), ``coverage`` (share of rows whose top
    probability is ≥ P), ``n`` (their count), ``accuracy`` and ``ua`` (unweighted accuracy over the
    classes present among them) of those rows (``nan`` when none is kept).
    """
    p, y = _check(probs, y)
    top = p.max(axis=1) if len(p) else np.zeros(0)
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
    out = []
    for t in thresholds:
        keep = top >= float(t)
        k = int(keep.sum())
        out.append(
            {
                "min_confidence": float(t),
                "coverage": float(k / len(p)) if len(p) else float("nan"),
                "n": k,
                "accuracy": float(np.mean(pred[keep] == y[keep])) if k else float("nan"),
                "ua": unweighted_accuracy(y[keep], pred[keep]) if k else float("nan"),
            }
        )
    return out


def summary(probs, y, *, n_bins: int = ECE_BINS, thresholds=COVERAGE_THRESHOLDS) -> dict:
    """ECE, Brier, NLL, the reliability bins and the coverage table of one set of predictions (JSON-able)."""
    conf, acc, count = reliability(probs, y, n_bins)

    def clean(a):
        return [None if not np.isfinite(v) else float(v) for v in a]

    return {
        "ece": ece(probs, y, n_bins),
        "brier": brier(probs, y),
        "nll": nll(probs, y),
        "n_bins": int(n_bins),
        "reliability": {"confidence": clean(conf), "accuracy": clean(acc), "count": [int(c) for c in count]},
        "coverage": coverage_table(probs, y, thresholds),
    }


def check_min_confidence(value) -> float | None:
    """``None`` or a probability in [0, 1]; anything else is a :class:`ConfigError` that says so."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"min_confidence must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"min_confidence {value!r} must be between 0 and 1 (e.g. 0.6)")
    return v


def top_label(p, labels, min_confidence: float | None = None) -> str:
    """The predicted label of one probability row, or :data:`UNCERTAIN` when its top probability is below ``min_confidence``."""
    p = np.asarray(p, dtype=np.float64)
    i = int(np.argmax(p))
    if min_confidence is not None and not p[i] >= min_confidence:
        return UNCERTAIN
    return str(labels[i])

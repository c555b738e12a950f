"""Domain statistics in numpy: shrinkage covariances, CORAL maps and a multi-kernel MMD.

CORAL (Sun, Feng & Saenko, AAAI 2016) aligns the first and second moments of two feature
distributions with one affine map. Here the map is computed both ways:

* ``direction="target-to-source"`` (what ``serkit adapt`` uses): whiten the target features with
  the target covariance, re-colour them with the source covariance and move them to the source
  mean, so a classifier fitted on the source sees target clips where it expects them;
* ``direction="source-to-target"``: the original paper's direction — re-colour the source
  (training) features to the target before fitting.

**Regulariser.** Covariances are Ledoit-Wolf shrinkage estimates (Ledoit & Wolf 2004): the sample
covariance is pulled towards ``mu * I`` (``mu`` = the mean variance) with the intensity that
minimises the expected Frobenius error, estimated in closed form from the same rows. Nothing is
tuned, so nothing can be chosen on a test set: the intensity is a function of the rows the
covariance is estimated from (training features for the source, unlabelled target features for
the target). A fixed ``shrinkage=`` in ``[0, 1]`` can be given instead. With fewer clips than
dimensions (a typical target folder) the sample covariance is singular and the estimate is
dominated by the shrinkage, which keeps the whitening well conditioned.

:func:`mmd` is the biased (V-statistic) squared maximum mean discrepancy with a sum of Gaussian
kernels, for measuring how far two feature sets are apart (zero for identical samples).

**Self-training** (:func:`fit_target_head`): a model's own confident predictions on unlabelled
target rows become pseudo-labels for a small classifier fitted on the target alone
(:class:`TargetHead`, multinomial logistic regression); its probabilities multiply the model's.
Per predicted class, the :data:`SELF_TRAIN_FRACTION` most confident rows are taken, so every class
the model finds keeps examples, and a class it never predicts on the target gets (almost) no
probability from the head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_CORAL_CLIPS",
    "DomainStats",
    "covariance",
    "ledoit_wolf_shrinkage",
    "domain_stats",
    "coral_map",
    "apply_map",
    "mmd",
    "SELF_TRAIN_FRACTION",
    "SELF_TRAIN_C",
    "TargetHead",
    "fit_target_head",
]

#: The fewest clips a CORAL target (or source) needs. Ledoit-Wolf works from 2 rows, but the mean
#: the map moves the target to is itself estimated from these clips; below ~20 its error is of the
#: order of the shifts being corrected.
MIN_CORAL_CLIPS = 20

#: Eigenvalues of a covariance below this fraction of the largest are clipped before a matrix root.
_EIG_FLOOR = 1e-10


@dataclass(frozen=True)
class DomainStats:
    """Mean [shape=(d,)], covariance [shape=(d, d)], the number of rows and the shrinkage used."""

    mean: np.ndarray
    cov: np.ndarray
    n: int
    shrinkage: float


def _as_rows(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        from .errors import ConfigError

        raise ConfigError(f"features must be a 2-D array [n_rows, n_dims]; got shape {x.shape}")
    return x


def ledoit_wolf_shrinkage(x) -> float:
    """The Ledoit-Wolf shrinkage intensity in ``[0, 1]`` for the rows of ``x`` [shape=(n, d)].

    Same estimate as :func:`sklearn.covariance.ledoit_wolf_shrinkage` (population covariance,
    target ``mu * I``).
    """
    x = _as_rows(x)
    n, d = x.shape
    if n < 2:
        return 1.0
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    s2 = float(np.sum(s * s))
    delta = (s2 - 2 * mu * np.trace(s) + d * mu * mu) / d
    if delta <= 0:
        return 0.0
    sq = np.sum(xc * xc, axis=1)
    beta = (float(np.sum(sq * sq)) / n - s2) / (d * n)
    return float(min(max(beta, 0.0), delta) / delta)


def covariance(x, shrinkage: float | str = "ledoit-wolf", *, shrink_to: str = "identity") -> tuple[np.ndarray, float]:
    """Shrunk covariance [shape=(d, d)] of the rows of ``x`` and the shrinkage used.

    ``shrink_to="identity"``: ``(1 - s) * S + s * mu * I`` with ``S`` the population sample
    covariance and ``mu`` its mean variance. ``shrink_to="diagonal"``: the same on the correlation
    matrix (columns scaled to unit variance first, then scaled back), so every dimension keeps its
    own variance and only the correlations shrink (Schäfer & Strimmer 2005's target "D"). ``s`` is
    Ledoit-Wolf's estimate (``"ledoit-wolf"``) or the given number in ``[0, 1]``.
    """
    x = _as_rows(x)
    if shrink_to == "diagonal":
        sd = x.std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        corr, shrink = covariance(x / sd, shrinkage)
        return corr * sd[:, None] * sd[None, :], shrink
    if shrink_to != "identity":
        from .errors import ConfigError

        raise ConfigError(f"unknown shrinkage target {shrink_to!r}; use 'identity' or 'diagonal'")
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / max(n, 1)
    if isinstance(shrinkage, str):
        if shrinkage != "ledoit-wolf":
            from .errors import ConfigError

            raise ConfigError(f"unknown shrinkage {shrinkage!r}; use 'ledoit-wolf' or a number in [0, 1]")
        shrink = ledoit_wolf_shrinkage(x)
    else:
        shrink = float(shrinkage)
        if not 0.0 <= shrink <= 1.0:
            from .errors import ConfigError

            raise ConfigError(f"shrinkage {shrinkage} must be in [0, 1]")
    mu = np.trace(s) / d
    out = (1 - shrink) * s
    out[np.diag_indices(d)] += shrink * mu
    return out, shrink


def domain_stats(x, shrinkage: float | str = "ledoit-wolf", *, shrink_to: str = "identity") -> DomainStats:
    """Mean and shrunk covariance of the rows of ``x`` [shape=(n, d)] (see :func:`covariance`)."""
    x = _as_rows(x)
    cov, shrink = covariance(x, shrinkage, shrink_to=shrink_to)
    return DomainStats(mean=x.mean(axis=0), cov=cov, n=len(x), shrinkage=shrink)


def _sym_power(c: np.ndarray, power: float) -> np.ndarray:
    """``c ** power`` of a symmetric positive semi-definite matrix (eigenvalues clipped at a floor)."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    w = np.maximum(w, max(float(w.max()), 0.0) * _EIG_FLOOR + 1e-300)
    return (v * w**power) @ v.T


def coral_map(
    source: DomainStats, target: DomainStats, *, direction: str = "target-to-source"
) -> tuple[np.ndarray, np.ndarray]:
    """The CORAL affine map ``(A, b)``: rows ``x`` go to ``x @ A + b``.

    ``"target-to-source"``: target rows mapped this way have the source mean and covariance
    (``A = C_t^{-1/2} C_s^{1/2}``, ``b = mu_s - mu_t A``); ``"source-to-target"``: the inverse
    roles (source rows re-coloured to the target).
    """
    if direction == "target-to-source":
        frm, to = target, source
    elif direction == "source-to-target":
        frm, to = source, target
    else:
        from .errors import ConfigError

        raise ConfigError(f"unknown CORAL direction {direction!r}; use 'target-to-source' or 'source-to-target'")
    if frm.mean.shape != to.mean.shape:
        from .errors import ConfigError

        raise ConfigError(
            f"source and target statistics have {source.mean.shape[0]} and {target.mean.shape[0]} dimensions; "
            "they must come from the same features"
        )
    a = _sym_power(frm.cov, -0.5) @ _sym_power(to.cov, 0.5)
    b = to.mean - frm.mean @ a
    return a, b


def apply_map(x, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of ``x`` [shape=(n, d)] through the affine map: ``x @ a + b``."""
    return np.asarray(x, dtype=np.float64) @ a + b


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.sum(x * x, 1)[:, None] + np.sum(y * y, 1)[None, :] - 2 * x @ y.T
    return np.maximum(d, 0.0)


def mmd(x, y, scales=None) -> float:
    """Squared MMD (biased V-statistic) between rows of ``x`` and ``y`` with a sum of Gaussian kernels.

    ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))`` over the bandwidths ``scales``; by default the
    median pairwise distance of the pooled rows times ``(0.25, 0.5, 1, 2, 4)`` (a multi-kernel
    MMD, as in Long et al. 2015). Zero for identical samples; grows as the distributions move apart.
    """
    x, y = _as_rows(x), _as_rows(y)
    dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    if scales is None:
        pooled = np.concatenate([dxx.ravel(), dyy.ravel(), dxy.ravel()])
        med = float(np.sqrt(np.median(pooled[pooled > 0]))) if np.any(pooled > 0) else 1.0
        scales = [med * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    total = 0.0
    for s in np.atleast_1d(np.asarray(scales, dtype=np.float64)):
        g = 1.0 / (2 * s * s)
        total += np.exp(-g * dxx).mean() + np.exp(-g * dyy).mean() - 2 * np.exp(-g * dxy).mean()
    return float(max(total, 0.0))


#: Of each class the model predicts on the target, the most confident fraction taken as pseudo-labels
#: (0.3 or 0.5, with C 0.01 or 0.001: chosen with :data:`serkit.speakers.VOICE_GROUPS` on training
#: corpora only, ``benchmarks/voices.py``).
SELF_TRAIN_FRACTION = 0.3
#: Inverse L2 strength of the target head (rows are standardised features, ~2 000 dimensions).
SELF_TRAIN_C = 0.01
#: Probability the head gives a class it has no pseudo-labels of (a floor, so the product stays defined).
_ABSENT = 1e-6


@dataclass(frozen=True)
class TargetHead:
    """A linear classifier fitted on pseudo-labelled target rows: ``coef`` [shape=(c, d)],
    ``intercept`` [shape=(c,)], ``classes`` [shape=(c,)] (label indices), ``n_labels``."""

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    n_labels: int

    def proba(self, x) -> np.ndarray:
        """[shape=(n, n_labels)]: the head's probabilities, :data:`_ABSENT` for classes it never saw."""
        x = _as_rows(x)
        out = np.full((len(x), self.n_labels), _ABSENT)
        z = x @ self.coef.T + self.intercept
        if len(self.classes) == 2 and z.shape[1] == 1:  # binary logistic regression: one margin
            z = np.concatenate([-z / 2, z / 2], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        out[:, self.classes] = p / p.sum(axis=1, keepdims=True)
        return out

    def refine(self, proba, x) -> np.ndarray:
        """``proba`` [shape=(n, n_labels)] multiplied by the head's probabilities of ``x``, renormalised."""
        z = np.log(np.maximum(np.asarray(proba, dtype=np.float64), 1e-12)) + np.log(self.proba(x))
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


def fit_target_head(
    x, proba, *, fraction: float = SELF_TRAIN_FRACTION, c: float = SELF_TRAIN_C, seed: int = 0
) -> TargetHead | None:
    """Self-training: fit a :class:`TargetHead` on target rows ``x`` [shape=(n, d)] pseudo-labelled by
    ``proba`` [shape=(n, n_labels)] (the model's probabilities); ``None`` when the model predicts
    fewer than two classes on the target (nothing to learn)."""
    from sklearn.linear_model import LogisticRegression

    x, proba = _as_rows(x), np.asarray(proba, dtype=np.float64)
    guess, conf = proba.argmax(axis=1), proba.max(axis=1)
    keep = []
    for k in np.unique(guess):
        rows = np.flatnonzero(guess == k)
        keep.extend(rows[np.argsort(-conf[rows], kind="stable")][: max(2, int(len(rows) * fraction))])
    keep = np.asarray(sorted(keep))
    if len(np.unique(guess[keep])) < 2:
        return None
    clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed).fit(x[keep], guess[keep])
    return TargetHead(
        coef=np.asarray(clf.coef_, dtype=np.float64),
        intercept=np.asarray(clf.intercept_, dtype=np.float64),
        classes=np.asarray(clf.classes_, dtype=int),
        n_labels=proba.shape[1],
    )

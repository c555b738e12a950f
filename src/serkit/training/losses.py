"""Training losses: focal loss, label-smoothed cross-entropy and their sum for emotion training; NT-Xent
(contrastive) and the distillation losses (KL with a temperature, cosine) for pretraining without labels.

The SoundNet article's recipe combines cross-entropy (label smoothing 0.1) with a focal term
(γ = 2) so that the many easy, confidently classified utterances stop dominating the gradient;
class weights counter the imbalance of emotional corpora (EmoDB has twice as much anger as disgust).

The classification losses take raw logits ``[shape=(batch, n_classes)]`` and integer targets ``[shape=(batch,)]``.
With ``weight`` given, a ``"mean"`` reduction divides by the summed weights of the batch's targets,
exactly as :func:`torch.nn.functional.cross_entropy` does, so a focal loss with γ = 0 *is* the
(weighted) cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = [
    "class_weights",
    "focal_loss",
    "smoothed_cross_entropy",
    "CombinedLoss",
    "nt_xent",
    "distillation_kl",
    "cosine_distance",
]


def class_weights(targets: Sequence[int], n_classes: int, mode: str | None = "balanced") -> np.ndarray | None:
    """Per-class loss weights from the training targets.

    Parameters
    ----------
    targets
        [shape=(n,)] integer class indices of the training utterances.
    n_classes
        Number of classes.
    mode
        ``"balanced"``: ``n / (n_classes * count_c)`` (scikit-learn's convention; a class absent from
        ``targets`` gets weight 0, it cannot be learned anyway); ``None`` or ``"none"``: no weights.

    Returns
    -------
    np.ndarray [shape=(n_classes,), float32] or None

    >>> class_weights([0, 0, 0, 1], 2).tolist()
    [0.6666666865348816, 2.0]
    """
    if mode is None or mode == "none":
        return None
    if mode != "balanced":
        raise ConfigError(f"unknown class_weights {mode!r}; use 'balanced' or None")
    t = np.asarray(targets, dtype=np.int64)
    if t.size == 0:
        raise ConfigError("cannot compute class weights from zero training utterances")
    counts = np.bincount(t, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, t.size / (n_classes * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


def _reduce(loss: torch.Tensor, w: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss if w is None else loss * w
    if reduction == "sum":
        return loss.sum() if w is None else (loss * w).sum()
    if reduction == "mean":
        return loss.mean() if w is None else (loss * w).sum() / w.sum().clamp_min(1e-12)
    raise ConfigError(f"unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Focal loss ``-(1 - p_t)**gamma * log(p_t)`` (Lin et al., 2017), multi-class.

    Parameters
    ----------
    logits
        [shape=(batch, n_classes)] unnormalised scores.
    target
        [shape=(batch,), int64] class indices.
    gamma
        Focusing parameter; 0 gives plain cross-entropy.
    weight
        [shape=(n_classes,)] per-class weights (the "alpha" of the paper), optional.
    reduction
        ``"mean"`` (weighted mean, as ``F.cross_entropy``), ``"sum"`` or ``"none"``.
    """
    if gamma < 0:
        raise ConfigError(f"focal gamma must be >= 0, got {gamma}")
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
    # (1 - p)**gamma computed from log p stays finite when p underflows
    loss = -((1.0 - logp.exp()).clamp_min(0.0) ** gamma) * logp if gamma else -logp
    w = weight.to(loss.dtype)[target] if weight is not None else None
    return _reduce(loss, w, reduction)


def smoothed_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smoothing: float = 0.1,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy against targets smoothed to ``1 - smoothing + smoothing / n_classes``.

    A thin wrapper over :func:`torch.nn.functional.cross_entropy` (``label_smoothing``) so that the
    two terms of :class:`CombinedLoss` share argument names.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ConfigError(f"label smoothing must be in [0, 1), got {smoothing}")
    return F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=smoothing, reduction=reduction)


class CombinedLoss(nn.Module):
    """``ce_weight * CE(label_smoothing) + focal_weight * Focal(gamma)``, both with the same class weights.

    Parameters
    ----------
    ce_weight, focal_weight
        Coefficients of the two terms (either may be 0, not both).
    gamma
        Focal focusing parameter.
    label_smoothing
        Smoothing of the cross-entropy term only (the focal term already discounts easy examples).
    weight
        [shape=(n_classes,)] per-class weights, e.g. from :func:`class_weights`; ``None`` for none.
    """

    def __init__(
        self,
        *,
        ce_weight: float = 1.0,
        focal_weight: float = 1.0,
        gamma: float = 2.0,
        label_smoothing: float = 0.1,
        weight: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    ):
        super().__init__()
        if ce_weight < 0 or focal_weight < 0 or ce_weight + focal_weight <= 0:
            raise ConfigError(
                f"loss weights ce_weight={ce_weight}, focal_weight={focal_weight}: both must be >= 0 and one > 0"
            )
        self.ce_weight = float(ce_weight)
        self.focal_weight = float(focal_weight)
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)
        w = None if weight is None else torch.as_tensor(np.asarray(weight, dtype=np.float32))
        # a buffer moves with .to(device) and never becomes a trainable parameter
        self.register_buffer("weight", w, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss for [shape=(batch, n_classes)] logits and [shape=(batch,)] targets."""
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            loss = loss + self.ce_weight * smoothed_cross_entropy(
                logits, target, smoothing=self.label_smoothing, weight=self.weight
            )
        if self.focal_weight:
            loss = loss + self.focal_weight * focal_loss(logits, target, gamma=self.gamma, weight=self.weight)
        return loss

    def extra_repr(self) -> str:
        return (
            f"ce_weight={self.ce_weight}, focal_weight={self.focal_weight}, gamma={self.gamma}, "
            f"label_smoothing={self.label_smoothing}, weighted={self.weight is not None}"
        )


# -- pretraining losses (serkit.training.pretrain) ---------------------------------------------


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al., 2020).

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are two views of one clip (a positive pair); the other
    ``2N - 2`` rows of the batch are its negatives. With cosine similarities ``s`` the loss of anchor
    ``a`` and positive ``p`` is ``-log(exp(s_ap / τ) / Σ_{k ≠ a} exp(s_ak / τ))``, averaged over all
    ``2N`` anchors.

    Known answers: when every similarity is 0 (random vectors in many dimensions), the loss is
    ``log(2N - 1)``; identical views of mutually orthogonal clips give its smallest value for
    non-negative similarities, ``log(1 + (2N - 2) exp(-1 / τ))``.

    Parameters
    ----------
    z1, z2
        [shape=(N, d)] projections of the two views (any scale: they are L2-normalised here).
    temperature
        τ > 0.
    """
    if not temperature > 0:
        raise ConfigError(f"NT-Xent temperature must be > 0, got {temperature}")
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ConfigError(f"NT-Xent needs two [N, d] batches with N >= 2, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, positive)


def distillation_kl(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 2.0
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): ``T² · KL(p_teacher^T ‖ softmax(student / T))``.

    ``teacher_probs`` [shape=(N, k)] are probabilities (rows summing to 1, as a serkit model's or an
    image network's posteriors); they are sharpened or softened to ``softmax(log p / T)``. The ``T²``
    keeps the gradient's size independent of ``T``. Zero exactly when the student's tempered
    distribution equals the teacher's.
    """
    if not temperature > 0:
        raise ConfigError(f"distillation temperature must be > 0, got {temperature}")
    t = float(temperature)
    log_p = torch.log(teacher_probs.float().clamp_min(1e-8))
    p_t = F.softmax(log_p / t, dim=1)
    log_q = F.log_softmax(student_logits.float() / t, dim=1)
    return F.kl_div(log_q, p_t, reduction="batchmean") * t * t


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(student_i, teacher_i)`` over the batch: embedding matching (0 when aligned)."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()

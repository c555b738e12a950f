"""Domain losses in torch for training with unlabelled target batches: Deep CORAL and multi-kernel MMD.

Both compare a batch of source embeddings with a batch of target embeddings [shape=(n, d)] and are
differentiable in both, so ``loss = CE + λ · domain_loss`` pulls the network's embedding of target
audio towards that of the training audio (:class:`serkit.training.Trainer` with ``target_signals``).

* :func:`coral_loss` — Deep CORAL (Sun & Saenko, ECCV-W 2016): ``||C_s − C_t||²_F / (4 d²)`` with
  ``C`` the unbiased sample covariance of each batch.
* :func:`mmd_loss` — squared MMD (biased V-statistic) with a sum of Gaussian kernels whose
  bandwidths are the median pairwise distance of the pooled batch times ``(0.25, 0.5, 1, 2, 4)``
  (Long et al. 2015's multi-kernel MMD; the same estimator as :func:`serkit.domain.mmd` in numpy).
  The bandwidths are computed without gradient (they are a choice of kernel, not a parameter).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["DOMAIN_LOSSES", "MMD_SCALES", "coral_loss", "mmd_loss", "domain_loss"]

#: multiples of the median pairwise distance used as Gaussian bandwidths by :func:`mmd_loss`
MMD_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def _check(source: torch.Tensor, target: torch.Tensor) -> None:
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ConfigError(
            f"domain losses take two batches of embeddings [n, d] with the same d; got {tuple(source.shape)} "
            f"and {tuple(target.shape)}"
        )


def _covariance(x: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(dim=0, keepdim=True)
    return xc.T @ xc / max(x.shape[0] - 1, 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL loss ``||C_s − C_t||²_F / (4 d²)`` of two batches [shape=(n_s, d)], [shape=(n_t, d)].

    ``C`` is the unbiased covariance (divided by ``n − 1``), as in Sun & Saenko's paper.

    >>> s = torch.tensor([[0.0, 0.0], [2.0, 0.0]]); t = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    >>> float(coral_loss(s, t))  # C_s = diag(2, 0), C_t = diag(0, 2): (4 + 4) / (4 * 4)
    0.5
    """
    _check(source, target)
    d = source.shape[1]
    diff = _covariance(source) - _covariance(target)
    return (diff * diff).sum() / (4.0 * d * d)


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return d.clamp(min=0.0)


def mmd_loss(source: torch.Tensor, target: torch.Tensor, scales=None) -> torch.Tensor:
    """Squared multi-kernel Gaussian MMD (biased) between two batches of embeddings.

    ``k(a, b) = Σ_s exp(−|a − b|² / (2 s²))``; ``scales`` default to the median pairwise distance
    of the pooled batch (positive distances only) times :data:`MMD_SCALES`. Zero for identical
    batches; grows as the two move apart.
    """
    _check(source, target)
    dss, dtt, dst = _sq_dists(source, source), _sq_dists(target, target), _sq_dists(source, target)
    if scales is None:
        with torch.no_grad():
            pooled = torch.cat([dss.flatten(), dtt.flatten(), dst.flatten()])
            positive = pooled[pooled > 0]
            if not positive.numel():
                med = 1.0
            elif positive.numel() < 2**24:  # torch.quantile's limit; it interpolates, as numpy's median does
                med = float(torch.quantile(positive, 0.5).sqrt())
            else:
                med = float(positive.median().sqrt())
        scales = [med * f for f in MMD_SCALES]
    total = source.new_zeros(())
    for s in scales:
        g = 1.0 / (2.0 * float(s) ** 2)
        total = total + torch.exp(-g * dss).mean() + torch.exp(-g * dtt).mean() - 2.0 * torch.exp(-g * dst).mean()
    return total.clamp(min=0.0)


#: method name → loss function (``serkit train --adapt-method``)
DOMAIN_LOSSES = {"deep-coral": coral_loss, "mmd": mmd_loss}


def domain_loss(method: str):
    """The loss function of a train-time method (``"deep-coral"`` or ``"mmd"``)."""
    try:
        return DOMAIN_LOSSES[method]
    except KeyError:
        raise ConfigError(f"unknown domain loss {method!r}; valid: {', '.join(DOMAIN_LOSSES)}") from None

"""AdaBN (Li et al. 2016): re-estimate batch-norm statistics on unlabelled target audio.

A network's batch-norm layers hold the mean and variance of their inputs on the training data;
AdaBN replaces them with the target domain's, leaving every learned weight as it is. Here the
chosen layers are reset and put in train mode with ``momentum=None`` (a cumulative average over
batches) while everything else stays in eval mode (dropout off, SpecAugment off, other batch
norms frozen), and the target clips go through the network without gradient. Batches group clips
of similar length and cut each to the shortest clip of its batch (a centred window), so no
zero padding enters the statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["batchnorm_layers", "adapt_batchnorm"]


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every batch-norm layer of ``module`` that tracks running statistics, in definition order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:  # batch norm in train mode needs two items
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


@torch.no_grad()
def adapt_batchnorm(
    net: nn.Module,
    signals: Sequence[np.ndarray],
    layers: Sequence[nn.Module],
    *,
    batch_size: int = 32,
    max_samples: int | None = None,
    device=None,
) -> int:
    """Re-estimate ``layers``' running mean and variance from ``signals`` passed through ``net``.

    Parameters
    ----------
    net
        Called as ``net(waveform [B, samples], lengths [B])`` (a :class:`serkit.networks.blocks.BlockwiseNet`).
    signals
        Float32 mono target waveforms at the network's rate (each at least its ``min_samples``).
    layers
        The batch-norm layers to re-estimate (:func:`batchnorm_layers` of the part of ``net`` whose
        statistics came from the training data).
    batch_size
        Clips per batch.
    max_samples
        Longest window cut from a clip (``None``: whole clips, cut to the shortest in the batch).

    Returns the number of batches. The network is left in eval mode with the new statistics.
    """
    if not layers:
        return 0
    was = [(m, m.momentum) for m in layers]
    net.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    device = device or next(net.parameters()).device
    lengths = [len(s) for s in signals]
    n_batches = 0
    try:
        for idx in _batches(lengths, batch_size):
            n = min(lengths[i] for i in idx)
            if max_samples:
                n = min(n, int(max_samples))
            rows = []
            for i in idx:
                s = np.asarray(signals[i], dtype=np.float32)
                start = (len(s) - n) // 2
                rows.append(s[start : start + n])
            x = torch.from_numpy(np.stack(rows)).to(device)
            if x.shape[0] < 2:
                raise ConfigError("AdaBN needs at least two target clips")
            net(x, torch.full((x.shape[0],), n, dtype=torch.long, device=device))
            n_batches += 1
    finally:
        for m, momentum in was:
            m.momentum = momentum
        net.eval()
    return n_batches

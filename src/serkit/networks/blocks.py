"""The blockwise-network contract and the one batched runner that trains and predicts with it.

A :class:`BlockwiseNet` is a stack of backbone blocks and a head; the trainer
(:mod:`serkit.training.trainer`) freezes and unfreezes its blocks, and prediction runs it through
:func:`predict_logits` / :func:`predict_pooled`, which batch whole utterances by length (zero
padding + valid lengths, so a batch gives what lone clips give). Prediction imports this module,
never the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "BlockwiseNet",
    "as_tensor",
    "pad_batch",
    "length_batches",
    "level_features",
    "predict_logits",
    "predict_pooled",
]


class BlockwiseNet(nn.Module):
    """The contract between a network and :class:`serkit.training.Trainer`.

    A ``BlockwiseNet`` is a stack of backbone ``blocks`` (lowest first) followed by a ``head``. Its
    representation at *level* ``k`` is the output of the first ``k`` blocks (level 0 is the waveform
    itself, ``[batch, samples]``; higher levels ``[batch, channels, frames]``); every level carries
    valid lengths so that padded batches give the same result as single clips.

    Subclasses set ``blocks`` (``nn.ModuleList``), ``head`` (``nn.Module``), ``sampling_rate`` (Hz)
    and ``min_samples`` (shortest input with one output frame), and implement :meth:`run_blocks`,
    :meth:`level_lengths` and :meth:`classify`.

    Capabilities are declared here, not guessed from layer names: ``prunable`` (the network has
    :meth:`channel_groups` for :mod:`serkit.networks.pruning`); :meth:`export_blocks` is the path
    an ONNX trace follows.
    """

    blocks: nn.ModuleList
    head: nn.Module
    sampling_rate: int = 16000
    min_samples: int = 1
    #: whether :meth:`channel_groups` gives the channels structured pruning may remove
    prunable: bool = False

    def run_blocks(self, h: torch.Tensor, lengths: torch.Tensor, start: int, stop: int):
        """Blocks ``start`` … ``stop - 1`` on a level-``start`` batch.

        Returns
        -------
        h : Tensor [shape=(batch, channels, frames)]
        lengths : Tensor [shape=(batch,), int64]
            Valid frames at level ``stop``.
        """
        raise NotImplementedError

    def level_lengths(self, lengths, start: int, stop: int):
        """Map valid lengths at level ``start`` to level ``stop`` (ints, arrays or tensors)."""
        raise NotImplementedError

    def classify(self, h: torch.Tensor, lengths: torch.Tensor, norm=None) -> torch.Tensor:
        """Logits [batch, n_classes] from the top level [batch, channels, frames].

        ``norm``: optional ``(mean, std)`` tensors [batch, d] standardising the pooled vector
        (speaker normalisation; only for networks with ``pooled``/``from_pooled``).
        """
        raise NotImplementedError

    def pooled(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The head's pooled vector [batch, d] from the top level (speaker-normalisable networks)."""
        raise NotImplementedError(f"{type(self).__name__} has no speaker normalisation")

    def from_pooled(self, p: torch.Tensor) -> torch.Tensor:
        """Logits from (normalised) pooled vectors [batch, d]."""
        raise NotImplementedError(f"{type(self).__name__} has no speaker normalisation")

    def set_global_norm(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training set's pooled statistics, the fallback of speaker normalisation."""
        raise NotImplementedError(f"{type(self).__name__} has no speaker normalisation")

    def channel_groups(self) -> list:
        """The prunable channel groups (:class:`serkit.networks.pruning.Group`), lowest first."""
        from ..errors import ConfigError

        raise ConfigError(f"cannot prune a {type(self).__name__}; only the soundnet and soundnet-res families prune")

    def export_blocks(self, waveform: torch.Tensor, lengths: torch.Tensor):
        """Every block on a waveform batch, in a form a trace can follow (no sizes from Python ints).

        The default is :meth:`run_blocks`; networks whose fast inference path is not traceable
        override it.
        """
        return self.run_blocks(waveform, lengths, 0, self.n_blocks)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def forward_from(self, h: torch.Tensor, lengths: torch.Tensor, level: int, norm=None) -> torch.Tensor:
        """Logits from a level-``level`` batch (runs the remaining blocks and the head)."""
        if level < self.n_blocks:
            h, lengths = self.run_blocks(h, lengths, level, self.n_blocks)
        if norm is None:
            return self.classify(h, lengths)
        return self.classify(h, lengths, norm=norm)

    def pooled_from(self, h: torch.Tensor, lengths: torch.Tensor, level: int) -> torch.Tensor:
        """Pooled vectors [batch, d] from a level-``level`` batch."""
        if level < self.n_blocks:
            h, lengths = self.run_blocks(h, lengths, level, self.n_blocks)
        return self.pooled(h, lengths)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [batch, n_classes] for waveforms [batch, samples] (zero-padded; ``lengths`` in samples)."""
        if lengths is None:
            lengths = torch.full((waveform.shape[0],), waveform.shape[-1], dtype=torch.long, device=waveform.device)
        return self.forward_from(waveform, lengths, 0)


# -- batching -----------------------------------------------------------------------------------


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 CPU tensor of a signal; read-only arrays (the shared audio cache) are copied."""
    x = np.asarray(x, dtype=np.float32)
    return torch.from_numpy(x if x.flags.writeable and x.flags.c_contiguous else x.copy())


def pad_batch(items: Sequence[torch.Tensor], lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad tensors ``[..., L_i]`` along the last axis → ``[B, ..., max L]`` and lengths ``[B]``."""
    longest = max(int(t.shape[-1]) for t in items)
    out = items[0].new_zeros((len(items), *items[0].shape[:-1], longest))
    for i, t in enumerate(items):
        out[i, ..., : t.shape[-1]] = t
    return out, torch.as_tensor(list(lengths), dtype=torch.long)


def length_batches(lengths: Sequence[int], budget: int, max_items: int) -> list[np.ndarray]:
    """Indices grouped by similar length so that ``len(batch) * longest <= budget`` (padding stays small)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches, cur, longest = [], [], 0
    for i in order:
        n = int(lengths[i])
        if cur and (max(longest, n) * (len(cur) + 1) > budget or len(cur) >= max_items):
            batches.append(np.asarray(cur))
            cur, longest = [], 0
        cur.append(int(i))
        longest = max(longest, n)
    if cur:
        batches.append(np.asarray(cur))
    return batches


@torch.no_grad()
def _run_batched(
    net: BlockwiseNet,
    items: Sequence[torch.Tensor],
    budget: int,
    max_items: int,
    device,
    step: Callable[[torch.Tensor, torch.Tensor], object],
):
    """The one batched runner: ``step(x, lengths)`` on length-sorted padded batches, in eval mode.

    Yields ``(indices, step's result)`` per batch; the network's train/eval mode is restored after.
    """
    was_training = net.training
    net.eval()
    lengths = [int(t.shape[-1]) for t in items]
    try:
        for idx in length_batches(lengths, budget, max_items):
            x, lens = pad_batch([items[i] for i in idx], [lengths[i] for i in idx])
            yield idx, step(x.to(device), lens.to(device))
    finally:
        net.train(was_training)


def _items_and_budget(net, signals, features, level, batch_seconds):
    items = list(features) if features is not None else [as_tensor(s) for s in signals]
    budget = int(batch_seconds * net.sampling_rate)
    if level:
        budget = max(1, int(net.level_lengths(budget, 0, level)))
    return items, budget


def level_features(
    net: BlockwiseNet, signals: Sequence[np.ndarray], level: int, device, budget_samples: int
) -> list[torch.Tensor]:
    """Level-``level`` representation [channels, frames] of every whole signal (CPU tensors, valid frames only)."""
    if level == 0:
        return [as_tensor(s) for s in signals]
    items = [as_tensor(s) for s in signals]
    out: list[torch.Tensor | None] = [None] * len(signals)
    for idx, (h, hl) in _run_batched(
        net, items, budget_samples, 64, device, lambda x, lens: net.run_blocks(x, lens, 0, level)
    ):
        h, hl = h.cpu(), hl.cpu()
        for j, i in enumerate(idx):
            out[i] = h[j, :, : int(hl[j])].clone()
    return out  # type: ignore[return-value]


def predict_logits(
    net: BlockwiseNet,
    signals: Sequence[np.ndarray],
    *,
    device=None,
    batch_seconds: float = 120.0,
    level: int = 0,
    features: Sequence[torch.Tensor] | None = None,
) -> np.ndarray:
    """Whole-utterance logits [shape=(n, n_classes)] in eval mode, batched by length.

    ``signals`` are float32 waveforms at ``net.sampling_rate``, each at least ``net.min_samples``
    long (pad shorter ones first). Alternatively ``features`` gives level-``level`` tensors
    [channels, frames] (the trainer's cache).
    """
    device = device or next(net.parameters()).device
    items, budget = _items_and_budget(net, signals, features, level, batch_seconds)
    out, order = [], []
    for idx, logits in _run_batched(
        net, items, budget, 256, device, lambda x, lens: net.forward_from(x, lens, level).float().cpu().numpy()
    ):
        out.append(logits)
        order.append(idx)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    logits = np.empty((len(items), out[0].shape[1]), dtype=np.float32)
    logits[np.concatenate(order)] = np.concatenate(out)
    return logits


def predict_pooled(
    net: BlockwiseNet,
    signals: Sequence[np.ndarray],
    *,
    device=None,
    batch_seconds: float = 120.0,
    level: int = 0,
    features: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Whole-utterance pooled head inputs [n, d] in eval mode (as :func:`predict_logits`, before the head)."""
    device = device or next(net.parameters()).device
    items, budget = _items_and_budget(net, signals, features, level, batch_seconds)
    out, order = [], []
    for idx, pooled in _run_batched(
        net, items, budget, 256, device, lambda x, lens: net.pooled_from(x, lens, level).float().cpu()
    ):
        out.append(pooled)
        order.append(idx)
    pooled = torch.cat(out)
    result = torch.empty_like(pooled)
    result[torch.as_tensor(np.concatenate(order))] = pooled
    return result

"""Masked pooling over variable-length frame sequences, and the classification head built on it.

A batch of clips of different lengths is zero-padded to the longest; each network maps the clips'
sample lengths to their valid frame counts (``frame_lengths``) and these poolers ignore the frames
beyond them, so a clip pools to the same vector alone or in any batch.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "conv_out_length",
    "pool_out_length",
    "lengths_to_mask",
    "masked_mean",
    "masked_max",
    "masked_std",
    "MASKED_STATS",
    "MeanMaxPool",
    "AttentionPool",
    "ClassifierHead",
    "MeanStdPool",
    "NormedHead",
    "SpeakerNormMixin",
    "ProjectionHead",
    "POOLS",
]


def conv_out_length(lengths, kernel: int, stride: int, padding: int = 0):
    """Output frames of a 1-D convolution: ``floor((L + 2 padding - kernel) / stride) + 1``, at least 0.

    Works elementwise on ints, numpy arrays and integer tensors.

    >>> conv_out_length(441000, 64, 2, 32)
    220501
    """
    out = (lengths + 2 * padding - kernel) // stride + 1
    return _clip0(out)


def pool_out_length(lengths, kernel: int, stride: int | None = None, *, ceil_mode: bool = False):
    """Output frames of a max/avg pool without padding (``ceil_mode`` as in torch), at least 0.

    >>> pool_out_length(220501, 8), pool_out_length(10, 4, ceil_mode=True)
    (27562, 3)
    """
    stride = stride or kernel
    if ceil_mode:
        # torch: ceil((L - k) / s) + 1, but the last window must start inside the input
        out = -((-(lengths - kernel)) // stride) + 1
        over = (out - 1) * stride >= lengths
        out = out - (over.long() if isinstance(over, torch.Tensor) else over * 1)
    else:
        out = (lengths - kernel) // stride + 1
    return _clip0(out)


def _clip0(x):
    if isinstance(x, torch.Tensor):
        return x.clamp(min=0)
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return np.maximum(x, 0)
    except ImportError:  # pragma: no cover
        pass
    return max(int(x), 0)


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask of valid frames.

    Parameters
    ----------
    lengths : Tensor [shape=(batch,), int]
        Valid frames per sequence.
    max_len : int
        Frames in the padded batch.

    Returns
    -------
    Tensor [shape=(batch, max_len), bool]
        ``mask[b, t]`` is True for ``t < lengths[b]``.

    >>> lengths_to_mask(torch.tensor([1, 3]), 3).int().tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    lengths = torch.as_tensor(lengths)
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _mask_for(x: torch.Tensor, mask: torch.Tensor | None, lengths) -> torch.Tensor | None:
    if mask is None and lengths is not None:
        mask = lengths_to_mask(torch.as_tensor(lengths, device=x.device), x.shape[-1])
    return mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over frames of ``x`` [B, C, T] counting only ``mask`` [B, T] frames → [B, C]."""
    if mask is None:
        return x.mean(dim=-1)
    m = mask[:, None, :].to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp(min=1)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Max over frames of ``x`` [B, C, T] among ``mask`` [B, T] frames → [B, C] (0 for an empty mask)."""
    if mask is None:
        return x.amax(dim=-1)
    out = x.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=-1)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out))


def masked_std(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Population standard deviation over ``mask`` frames of ``x`` [B, C, T] → [B, C]."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean[..., None]) ** 2, mask)
    return torch.sqrt(var.clamp(min=eps))


#: statistic name → masked statistic over frames ([B, C, T], mask → [B, C]); the embedding
#: extractors' ``pool`` names
MASKED_STATS = {"mean": masked_mean, "max": masked_max, "std": masked_std}


class _MeanAndPool(nn.Module):
    """Masked mean ‖ a second statistic (the subclass' ``second``) over frames: [B, C, T] → [B, 2C]."""

    def out_dim(self, in_dim: int) -> int:
        return 2 * in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths=None) -> torch.Tensor:
        mask = _mask_for(x, mask, lengths)
        return torch.cat([masked_mean(x, mask), self.second(x, mask)], dim=1)


class MeanMaxPool(_MeanAndPool):
    """Masked mean ‖ max over frames: [B, C, T] → [B, 2C]."""

    second = staticmethod(masked_max)


class MeanStdPool(_MeanAndPool):
    """Masked mean ‖ standard deviation over frames: [B, C, T] → [B, 2C]."""

    second = staticmethod(masked_std)


class AttentionPool(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): attention-weighted mean ‖ std, [B, C, T] → [B, 2C].

    A small 1×1-conv network scores every frame (one score per channel), the scores are softmaxed
    over the valid frames only, and the weighted mean and standard deviation are concatenated.

    Parameters
    ----------
    in_dim : int
        Channels C of the frame features.
    hidden : int
        Width of the scoring network.
    """

    def __init__(self, in_dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Conv1d(in_dim, hidden, 1), nn.Tanh(), nn.Conv1d(hidden, in_dim, 1))

    def out_dim(self, in_dim: int) -> int:
        return 2 * in_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths=None) -> torch.Tensor:
        mask = _mask_for(x, mask, lengths)
        e = self.score(x)
        if mask is not None:
            e = e.masked_fill(~mask[:, None, :], float("-inf"))
        w = torch.softmax(e, dim=-1)
        w = torch.nan_to_num(w)  # an all-masked row softmaxes to NaN; it pools to 0 instead
        mean = (w * x).sum(-1)
        var = (w * x * x).sum(-1) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-5))], dim=1)


#: pool name → class; ``ClassifierHead(pool=...)`` accepts these names
POOLS = {"meanmax": MeanMaxPool, "meanstd": MeanStdPool, "attention": AttentionPool}


class ClassifierHead(nn.Module):
    """Pool frames, drop out, classify: [B, C, T] (+ lengths) → logits [B, n_classes].

    Parameters
    ----------
    in_dim : int
        Channels C of the frame features (e.g. 256 for SoundNet8 conv5).
    n_classes : int
        Number of emotions.
    dropout : float
        Dropout before the linear layer (0.3 in the SoundNet transfer recipe).
    pool : {"meanmax", "meanstd", "attention"}
        Masked mean ‖ max, mean ‖ standard deviation, or attentive statistics pooling; all give 2C features.

    Notes
    -----
    An input that is already pooled, [B, 2C], skips the pooling.
    """

    def __init__(self, in_dim: int, n_classes: int, dropout: float = 0.3, pool: str = "meanmax"):
        super().__init__()
        if pool not in POOLS:
            from ..errors import ConfigError

            raise ConfigError(f"unknown pooling {pool!r}; known: {', '.join(sorted(POOLS))}")
        self.in_dim = in_dim
        self.n_classes = n_classes
        self.pool_name = pool
        self.pool = AttentionPool(in_dim) if pool == "attention" else POOLS[pool]()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(self.pool.out_dim(in_dim), n_classes)

    def forward(self, x: torch.Tensor, lengths=None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, n_classes]; ``lengths`` [B] are valid *frames* of ``x`` (see a network's ``frame_lengths``)."""
        if x.dim() == 3:
            x = self.pool(x, mask=mask, lengths=lengths)
        return self.linear(self.dropout(x))


class NormedHead(nn.Module):
    """Pool → batch norm → :class:`ClassifierHead` (dropout → linear), with optional speaker normalisation.

    SoundNet's pooled activations differ in scale by orders of magnitude between channels and
    layers (conv7's are ~0.1, conv4's ~10); standardising them before the linear layer lets one
    learning rate suit every layer (with a frozen conv7, UA on two held-out EmoDB speakers rose
    from 0.35 to 0.6 at equal epochs).

    Parameters
    ----------
    in_dim : int
        Channels C of the frame features [B, C, T].
    n_classes : int
    dropout : float
    pool : {"meanmax", "meanstd", "attention"}
    speaker_norm : bool
        Keep ``global_mean`` / ``global_std`` buffers [2C]: the training set's pooled statistics, the
        fallback when no speaker statistics are given (set by the trainer after training).
    """

    def __init__(self, in_dim: int, n_classes: int, *, dropout: float, pool: str, speaker_norm: bool = False):
        super().__init__()
        self.head = ClassifierHead(in_dim, n_classes, dropout=dropout, pool=pool)
        dim = self.head.pool.out_dim(in_dim)
        self.norm = nn.BatchNorm1d(dim)
        self.speaker_norm = speaker_norm
        if speaker_norm:
            # fallback statistics for speakers without enough utterances (set after training)
            self.register_buffer("global_mean", torch.zeros(dim))
            self.register_buffer("global_std", torch.ones(dim))

    def pooled(self, h, lengths):
        return self.head.pool(h, lengths=lengths)

    def from_pooled(self, p):
        return self.head(self.norm(p))

    def forward(self, h, lengths, norm=None):
        p = self.pooled(h, lengths)
        if norm is not None:
            p = (p - norm[0]) / norm[1]
        return self.from_pooled(p)


class SpeakerNormMixin:
    """The speaker-normalisation half of the trainer's ``BlockwiseNet`` contract for a net whose
    ``head`` is a :class:`NormedHead`."""

    def pooled(self, h, lengths):
        return self.head.pooled(h, lengths)

    def from_pooled(self, p):
        return self.head.from_pooled(p)

    def classify(self, h, lengths, norm=None):
        return self.head(h, lengths, norm=norm)

    def set_global_norm(self, mean, std):
        if self.head.speaker_norm:
            self.head.global_mean.copy_(mean)
            self.head.global_std.copy_(std)


class ProjectionHead(nn.Module):
    """The pretraining head on a pooled vector: linear → BN → ReLU → linear (SimCLR's g(·)), or one linear layer.

    Used by :mod:`serkit.training.pretrain` only and thrown away afterwards: fine-tuning keeps the
    backbone below the pooling, whose representation the head protects from the loss's invariances.

    Parameters
    ----------
    in_dim : int
        Length of the pooled vector.
    out_dim : int
        Projection size (NT-Xent) or the teacher's vector length (distillation).
    hidden : int
        Hidden units; 0 makes the head a single linear layer.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256):
        super().__init__()
        if hidden:
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
            )
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.net(p)

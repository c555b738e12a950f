"""A trainer for waveform classifiers built as a stack of blocks plus a head (SoundNet and kin).

It implements the SoundNet article's transfer recipe on CPU in reasonable time:

* **strategies** — ``freeze`` (backbone frozen, only the head learns), ``progressive`` (the head
  first, then one more block per stage, from the top), ``full`` (every block, small learning
  rates), and ``auto``, which picks by training-set size as the article does (< 1 000 utterances →
  freeze, 1 000–5 000 → progressive, > 5 000 → full);
* **optimisation** — AdamW; discriminative learning rates (the top backbone block gets ``lr``, the
  one below ``lr * lr_decay`` and so on; the head ``head_lr``); cosine annealing with warm
  restarts every ``cosine_period`` epochs, stepped every batch; gradient clipping at 1.0;
* **loss** — label-smoothed (0.1) cross-entropy + focal loss (γ = 2), balanced class weights;
* **data** — random ``crop_seconds`` crops for training (shorter clips are zero-padded and masked),
  whole utterances for validation and prediction, batched by length (pad + lengths → masked pooling);
* **early stopping** on a validation split of whole *training* speakers (~15 %; a stratified
  utterance split when there is one speaker; :func:`serkit.evaluation.validation_split`), keeping
  the weights of the best epoch (highest unweighted accuracy, then lowest loss);
* **speed** — the output of the frozen lower blocks never changes, so (without waveform
  augmentation) it is computed once per stage for every utterance and the random crops are cut
  from it; a frozen SoundNet8 then trains its head in well under a second per epoch.

The network contract is :class:`BlockwiseNet`; :mod:`serkit.models.neural` builds one around
SoundNet8 and SoundNetRes.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..runtime import default_threads
from .losses import CombinedLoss, class_weights

__all__ = [
    "TrainConfig",
    "TrainResult",
    "BlockwiseNet",
    "Trainer",
    "STRATEGIES",
    "choose_strategy",
    "cosine_factor",
    "predict_logits",
]

STRATEGIES = ("auto", "freeze", "progressive", "full")


@dataclass
class TrainConfig:
    """Every training option, with the defaults of the SoundNet transfer recipe.

    Attributes
    ----------
    strategy
        ``"auto"`` | ``"freeze"`` | ``"progressive"`` | ``"full"`` (see the module docstring).
    epochs
        Largest number of epochs (early stopping usually ends sooner).
    batch_size
        Training clips per batch.
    lr
        Start learning rate of the top backbone block (1e-4, the article's value).
    head_lr
        Start learning rate of the head. The head starts from random weights and so needs a larger
        one than the pretrained blocks.
    lr_decay
        Discriminative learning rates: block ``d`` levels below the top gets ``lr * lr_decay**d``.
    weight_decay
        AdamW decoupled weight decay.
    cosine_period
        Epochs per cosine cycle (warm restarts, ``T_0`` of ``CosineAnnealingWarmRestarts``); the
        schedule is stepped after every batch, so the learning rate falls smoothly within a cycle.
    min_lr_ratio
        The cosine floor as a fraction of each group's start learning rate.
    label_smoothing
        Smoothing of the cross-entropy term.
    ce_weight, focal_weight, focal_gamma
        Loss = ``ce_weight * CE + focal_weight * Focal(focal_gamma)``.
    class_weights
        ``"balanced"`` (from the training labels) or ``None``.
    grad_clip
        Largest gradient norm (over all trainable parameters); 0 turns clipping off.
    dropout
        Dropout before the head's linear layer.
    stage_epochs
        ``progressive``: epochs per stage; stage 0 trains the head alone, each later stage
        unfreezes the next block down.
    max_unfrozen
        ``progressive``: never unfreeze more than this many blocks (``None``: all of them).
    train_bn
        Whether unfrozen blocks update their batch-norm running statistics. Off by default: with
        16 clips per batch, many of them zero-padded, batch statistics are noisy and biased, so the
        pretrained statistics are kept and only the BN scale and shift are learned.
    crop_seconds
        Length of the random training crops (seconds); ``None`` trains on whole utterances.
    val_fraction
        Share of training utterances held out, as whole speakers, for early stopping (at least one
        speaker, never all; a stratified utterance share when there is a single speaker); 0 turns
        early stopping off and trains for ``epochs``.
    patience
        Stop after this many epochs without a better validation score.
    min_epochs
        Never stop before this many epochs.
    seed
        Seeds numpy, torch and the split; a run is reproducible on the same machine.
    augment
        Waveform augmentation: ``None``/``False`` off, ``True`` for the defaults of
        :class:`serkit.training.augment.Augmenter`, or a dict of its options.
    cache_frozen_features
        Compute the frozen blocks' output once per stage and crop from it (exact for the frozen
        part; crops then start on frame boundaries). While augmentation is on, training batches
        go through the frozen blocks afresh, but speaker statistics and validation still use the cache.
    cache_max_mb
        Do not cache when the cached features would exceed this size.
    eval_batch_seconds
        Audio per batch (seconds, padded) for whole-utterance validation and prediction.
    normalisation
        ``"none"`` or ``"speaker"``: standardise the head's pooled vector with the statistics
        (mean, std per dimension) of the same speaker's whole utterances, as the classic models do.
        Training speakers' statistics are recomputed at the start of every epoch (no gradient flows
        through them); validation speakers' come from their own utterances, exactly as a test
        speaker's do at prediction time. Needs a network with ``pooled``/``from_pooled``
        (SoundNet nets built with ``speaker_norm=True``).
    min_speaker_utterances
        Speakers with fewer utterances use the training set's global statistics instead.
    """

    strategy: str = "auto"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    head_lr: float = 1e-3
    lr_decay: float = 0.5
    weight_decay: float = 1e-2
    cosine_period: float = 5.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    ce_weight: float = 1.0
    focal_weight: float = 1.0
    focal_gamma: float = 2.0
    class_weights: str | None = "balanced"
    grad_clip: float = 1.0
    dropout: float = 0.3
    stage_epochs: int = 2
    max_unfrozen: int | None = None
    train_bn: bool = False
    crop_seconds: float | None = 3.0
    val_fraction: float = 0.15
    patience: int = 8
    min_epochs: int = 5
    seed: int = 0
    augment: dict | bool | None = None
    cache_frozen_features: bool = True
    cache_max_mb: float = 1024.0
    eval_batch_seconds: float = 120.0
    normalisation: str = "none"
    min_speaker_utterances: int = 10

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown training strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        for name in ("epochs", "batch_size", "stage_epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "head_lr", "cosine_period"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"train.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout}")
        if self.normalisation not in ("none", "speaker"):
            raise ConfigError(f"train.normalisation must be 'none' or 'speaker', got {self.normalisation!r}")
        if self.crop_seconds is not None and self.crop_seconds <= 0:
            raise ConfigError(f"train.crop_seconds must be > 0 or null (whole utterances), got {self.crop_seconds}")

    @classmethod
    def from_dict(cls, options: dict | None) -> "TrainConfig":
        """Build from a recipe's ``train`` mapping; an unknown key lists the valid ones."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**options)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What happened in one :meth:`Trainer.fit` (stored on the fitted model for reports)."""

    strategy: str
    epochs_run: int
    best_epoch: int
    best_val_ua: float | None
    n_train: int
    n_val: int
    val_speakers: list[str]
    seconds: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class BlockwiseNet(nn.Module):
    """The contract between a network and :class:`Trainer`.

    A ``BlockwiseNet`` is a stack of backbone ``blocks`` (lowest first) followed by a ``head``. Its
    representation at *level* ``k`` is the output of the first ``k`` blocks (level 0 is the waveform
    itself, ``[batch, samples]``; higher levels ``[batch, channels, frames]``); every level carries
    valid lengths so that padded batches give the same result as single clips.

    Subclasses set ``blocks`` (``nn.ModuleList``), ``head`` (``nn.Module``), ``sampling_rate`` (Hz)
    and ``min_samples`` (shortest input with one output frame), and implement :meth:`run_blocks`,
    :meth:`level_lengths` and :meth:`classify`.
    """

    blocks: nn.ModuleList
    head: nn.Module
    sampling_rate: int = 16000
    min_samples: int = 1

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


# -- helpers ----------------------------------------------------------------------------------


def choose_strategy(n_train: int) -> str:
    """The article's rule: < 1 000 utterances → ``freeze``, 1 000–5 000 → ``progressive``, > 5 000 → ``full``.

    >>> choose_strategy(535), choose_strategy(2800), choose_strategy(10039)
    ('freeze', 'progressive', 'full')
    """
    if n_train < 1000:
        return "freeze"
    if n_train <= 5000:
        return "progressive"
    return "full"


def cosine_factor(step: float, period: float, min_ratio: float = 0.0) -> float:
    """Multiplier of the start learning rate after ``step`` steps of cosine annealing with warm restarts.

    Equal to ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=period, T_mult=1,
    eta_min=min_ratio * lr)`` (kept as a function because every parameter group has its own start rate).

    >>> cosine_factor(0, 10), round(cosine_factor(5, 10), 6), cosine_factor(10, 10)
    (1.0, 0.5, 1.0)
    """
    t = (step % period) / period
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _unweighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (UA, the usual SER score)."""
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes])) if len(classes) else float("nan")


def _pad_batch(items: Sequence[torch.Tensor], lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad tensors ``[..., L_i]`` along the last axis → ``[B, ..., max L]`` and lengths ``[B]``."""
    longest = max(int(t.shape[-1]) for t in items)
    out = items[0].new_zeros((len(items), *items[0].shape[:-1], longest))
    for i, t in enumerate(items):
        out[i, ..., : t.shape[-1]] = t
    return out, torch.as_tensor(list(lengths), dtype=torch.long)


def _length_batches(lengths: Sequence[int], budget: int, max_items: int) -> list[np.ndarray]:
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


def _set_trainable(net: BlockwiseNet, n_frozen: int, train_bn: bool) -> None:
    """Freeze the lowest ``n_frozen`` blocks (no gradients, eval mode) and train the rest and the head."""
    net.train()
    for i, block in enumerate(net.blocks):
        frozen = i < n_frozen
        for p in block.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            block.eval()  # frozen batch norm uses the pretrained running statistics
        elif not train_bn:
            for m in block.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
    for p in net.head.parameters():
        p.requires_grad_(True)


@torch.no_grad()
def _level_features(
    net: BlockwiseNet, signals: Sequence[np.ndarray], level: int, device, budget_samples: int
) -> list[torch.Tensor]:
    """Level-``level`` representation [channels, frames] of every whole signal (CPU tensors, valid frames only)."""
    if level == 0:
        return [_tensor(s) for s in signals]
    was_training = net.training
    net.eval()
    lengths = [len(s) for s in signals]
    out: list[torch.Tensor | None] = [None] * len(signals)
    for idx in _length_batches(lengths, budget_samples, 64):
        x, lens = _pad_batch([_tensor(signals[i]) for i in idx], [lengths[i] for i in idx])
        h, hl = net.run_blocks(x.to(device), lens.to(device), 0, level)
        h, hl = h.cpu(), hl.cpu()
        for j, i in enumerate(idx):
            out[i] = h[j, :, : int(hl[j])].clone()
    net.train(was_training)
    return out  # type: ignore[return-value]


@torch.no_grad()
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
    was_training = net.training
    net.eval()
    items = list(features) if features is not None else [_tensor(s) for s in signals]
    lengths = [int(t.shape[-1]) for t in items]
    budget = int(batch_seconds * net.sampling_rate)
    if level:
        budget = max(1, int(net.level_lengths(budget, 0, level)))
    out = []
    order = []
    for idx in _length_batches(lengths, budget, 256):
        x, lens = _pad_batch([items[i] for i in idx], [lengths[i] for i in idx])
        out.append(net.forward_from(x.to(device), lens.to(device), level).float().cpu().numpy())
        order.append(idx)
    net.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    logits = np.empty((len(items), out[0].shape[1]), dtype=np.float32)
    logits[np.concatenate(order)] = np.concatenate(out)
    return logits


@torch.no_grad()
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
    was_training = net.training
    net.eval()
    items = list(features) if features is not None else [_tensor(s) for s in signals]
    lengths = [int(t.shape[-1]) for t in items]
    budget = int(batch_seconds * net.sampling_rate)
    if level:
        budget = max(1, int(net.level_lengths(budget, 0, level)))
    out, order = [], []
    for idx in _length_batches(lengths, budget, 256):
        x, lens = _pad_batch([items[i] for i in idx], [lengths[i] for i in idx])
        out.append(net.pooled_from(x.to(device), lens.to(device), level).float().cpu())
        order.append(idx)
    net.train(was_training)
    pooled = torch.cat(out)
    result = torch.empty_like(pooled)
    result[torch.as_tensor(np.concatenate(order))] = pooled
    return result


def speaker_norms(pooled: torch.Tensor, speakers, global_mean: torch.Tensor, global_std: torch.Tensor,
                  min_utterances: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(mean, std)`` [n, d]: each row gets its speaker's statistics over ``pooled``.

    Speakers with fewer than ``min_utterances`` rows (or ``speakers=None``) get the global ones;
    a speaker's std is floored at 0.1 × the global std.
    """
    n = pooled.shape[0]
    mean = global_mean.to(pooled).expand(n, -1).clone()
    std = global_std.to(pooled).expand(n, -1).clone()
    if speakers is None:
        return mean, std
    speakers = np.asarray([str(s) for s in speakers])
    floor = 0.1 * global_std.to(pooled)
    for s in np.unique(speakers):
        rows = torch.as_tensor(np.where(speakers == s)[0])
        if len(rows) < min_utterances:
            continue
        mu, sd = _stats(pooled[rows])
        # a dimension (nearly) constant for one speaker must not be blown up: floor its std at a
        # tenth of the global one (a channel dead on the training set once gave a test speaker
        # values of ±50 and a UA of 0.19)
        mean[rows], std[rows] = mu, torch.maximum(sd, floor)
    return mean, std


def _stats(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = p.mean(0)
    sd = p.std(0, unbiased=False)
    return mu, torch.where(sd > 1e-6, sd, torch.ones_like(sd))


# -- the trainer ------------------------------------------------------------------------------


class Trainer:
    """Train a :class:`BlockwiseNet` on labelled waveforms.

    Parameters
    ----------
    config
        :class:`TrainConfig` (or a dict of its fields).
    progress
        Print one line per epoch on stderr.
    device
        ``None``: CUDA when available, else CPU.
    threads
        Torch CPU threads (``None``: :func:`default_threads`, re-checked every epoch). A runtime
        option, never saved.
    """

    def __init__(self, config: TrainConfig | dict | None = None, *, progress: bool = False, device=None, threads=None):
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        self.progress = progress
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.threads = threads

    # -- schedule of frozen blocks --------------------------------------------------------------
    def _n_frozen(self, strategy: str, epoch: int, n_blocks: int) -> int:
        if strategy == "freeze":
            return n_blocks
        if strategy == "full":
            return 0
        cap = n_blocks if self.config.max_unfrozen is None else min(n_blocks, int(self.config.max_unfrozen))
        return n_blocks - min(cap, epoch // self.config.stage_epochs)

    def _optimizer(self, net: BlockwiseNet) -> torch.optim.Optimizer:
        c = self.config
        groups = [{"params": list(net.head.parameters()), "lr": c.head_lr, "name": "head"}]
        n = net.n_blocks
        for i, block in enumerate(net.blocks):
            params = list(block.parameters())
            if params:
                groups.append({"params": params, "lr": c.lr * c.lr_decay ** (n - 1 - i), "name": f"block{i}"})
        for g in groups:
            g["initial_lr"] = g["lr"]
        # frozen parameters get no gradient, and AdamW skips (and does not decay) those
        return torch.optim.AdamW(groups, weight_decay=c.weight_decay)

    def _log(self, msg: str) -> None:
        if self.progress:
            print(f"serkit train: {msg}", file=sys.stderr, flush=True)

    # -- fit ------------------------------------------------------------------------------------
    def fit(
        self,
        net: BlockwiseNet,
        signals: Sequence[np.ndarray],
        targets: Sequence[int],
        speakers: Sequence[str],
        *,
        n_classes: int,
        augmenter: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        batch_loss: Callable[[torch.Tensor, torch.Tensor, np.ndarray, Callable], torch.Tensor] | None = None,
    ) -> TrainResult:
        """Train ``net`` in place and leave it holding the weights of the best validation epoch.

        Parameters
        ----------
        net
            The network (its head sized for ``n_classes``).
        signals
            Float32 mono waveforms at ``net.sampling_rate``; shorter than ``net.min_samples`` ones
            are zero-padded to it.
        targets
            [shape=(n,)] class indices.
        speakers
            [shape=(n,)] speaker ids (the validation split holds out whole speakers).
        n_classes
            Number of classes.
        augmenter
            ``aug(signal, rng) -> signal`` applied to every training crop; default from ``config.augment``.
        batch_loss
            ``batch_loss(logits, target, idx, recipe_loss) -> loss`` replaces the loss of every
            training batch: ``idx`` are the batch's indices into ``signals`` (to look up
            per-utterance targets, e.g. a teacher's probabilities for distillation) and
            ``recipe_loss(logits, target)`` is the configured loss. Validation (early stopping)
            is unchanged: UA, with the configured loss breaking ties.
        """
        previous_threads = torch.get_num_threads()
        try:
            return self._fit(net, signals, targets, speakers, n_classes=n_classes, augmenter=augmenter,
                             batch_loss=batch_loss)
        finally:
            torch.set_num_threads(previous_threads)

    def _fit(self, net, signals, targets, speakers, *, n_classes, augmenter, batch_loss) -> TrainResult:
        c = self.config
        t_start = time.perf_counter()
        torch.set_num_threads(self.threads or default_threads())
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        if augmenter is None and c.augment:
            from .augment import Augmenter

            options = dict(c.augment) if isinstance(c.augment, dict) else {}
            options["sampling_rate"] = net.sampling_rate  # always the network's rate
            augmenter = Augmenter(**options)

        y = np.asarray(targets, dtype=np.int64)
        if len(signals) != len(y) or len(speakers) != len(y):
            raise ConfigError(f"got {len(signals)} signals, {len(y)} targets and {len(speakers)} speakers; they must match")
        if len(y) < 2 or len(np.unique(y)) < 2:
            raise ConfigError(f"training needs at least two classes; got {len(np.unique(y))} class(es) in {len(y)} utterances")
        signals = [_pad_min(np.asarray(s, dtype=np.float32), net.min_samples) for s in signals]
        fit_idx, val_idx, val_speakers = _split(y, speakers, c.val_fraction, c.seed)
        spk_norm = c.normalisation == "speaker"
        spk = np.asarray([str(s) for s in speakers])
        strategy = choose_strategy(len(y)) if c.strategy == "auto" else c.strategy
        n_blocks = net.n_blocks

        net.to(self.device)
        loss_fn = CombinedLoss(
            ce_weight=c.ce_weight,
            focal_weight=c.focal_weight,
            gamma=c.focal_gamma,
            label_smoothing=c.label_smoothing,
            weight=class_weights(y[fit_idx], n_classes, c.class_weights),
        ).to(self.device)
        opt = self._optimizer(net)
        steps_per_epoch = max(1, math.ceil(len(fit_idx) / c.batch_size))
        period_steps = c.cosine_period * steps_per_epoch
        crop = int(round(c.crop_seconds * net.sampling_rate)) if c.crop_seconds else None
        if crop is not None:
            crop = max(crop, net.min_samples)
        budget = int(c.eval_batch_seconds * net.sampling_rate)
        self._log(
            f"strategy {strategy} ({'chosen by auto for ' + str(len(y)) + ' utterances' if c.strategy == 'auto' else 'as asked'}); "
            f"{len(fit_idx)} train / {len(val_idx)} validation utterances"
            + (f" (validation speakers {', '.join(val_speakers)})" if val_speakers else "")
        )

        cache_level, cache = -1, None  # level and features of the frozen prefix, per utterance
        best = {"ua": -1.0, "loss": math.inf, "epoch": 0, "state": None}
        history: list[dict] = []
        step = 0
        bad_epochs = 0
        for epoch in range(c.epochs):
            t0, cpu0 = time.perf_counter(), time.process_time()
            torch.set_num_threads(self.threads or default_threads())
            n_frozen = self._n_frozen(strategy, epoch, n_blocks)
            _set_trainable(net, n_frozen, c.train_bn)
            # the frozen prefix's output of the clean whole utterances: exact for speaker statistics
            # and validation even while augmenting; training crops come from it only without augmentation
            use_cache = c.cache_frozen_features and n_frozen > 0
            if use_cache and cache_level != n_frozen:
                cache = self._build_cache(net, signals, n_frozen, budget)
                cache_level = n_frozen if cache is not None else -1
                _set_trainable(net, n_frozen, c.train_bn)
            have_cache = use_cache and cache_level == n_frozen
            cached = have_cache and augmenter is None  # training batches cut from the cache
            level = n_frozen if cached else 0
            crop_len = None if crop is None else int(net.level_lengths(crop, 0, level)) if level else crop
            if spk_norm:
                # this epoch's statistics of every training speaker, from its whole utterances
                items_fit = [cache[i] for i in fit_idx] if have_cache else [signals[i] for i in fit_idx]
                p_fit = predict_pooled(net, [] if have_cache else items_fit, level=n_frozen if have_cache else 0,
                                       features=items_fit if have_cache else None, device=self.device,
                                       batch_seconds=c.eval_batch_seconds)
                g_mu, g_sd = _stats(p_fit)
                mu_fit, sd_fit = speaker_norms(p_fit, spk[fit_idx], g_mu, g_sd, c.min_speaker_utterances)
                row_of = np.full(len(y), -1)
                row_of[fit_idx] = np.arange(len(fit_idx))
                net.train()
                _set_trainable(net, n_frozen, c.train_bn)

            # -- one pass over the training part --
            order = rng.permutation(fit_idx)
            total, count = 0.0, 0
            for idx in _train_batches(order, c.batch_size):
                items = []
                for i in idx:
                    if cached:
                        items.append(_random_crop(cache[i], crop_len, rng))
                    else:
                        x = signals[i]
                        if augmenter is not None:
                            # augment a little more than the crop (speed/stretch change the length)
                            x = _random_crop_np(x, None if crop is None else int(crop * 1.25), rng)
                            x = _pad_min(augmenter(x, rng), net.min_samples)
                        items.append(_random_crop(_tensor(x), crop, rng))
                h, lens = _pad_batch(items, [int(t.shape[-1]) for t in items])
                h, lens = h.to(self.device), lens.to(self.device)
                target = torch.as_tensor(y[idx], device=self.device)
                start = level
                if not cached and n_frozen > 0:
                    with torch.no_grad():
                        h, lens = net.run_blocks(h, lens, 0, n_frozen)
                    start = n_frozen
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * cosine_factor(step, period_steps, c.min_lr_ratio)
                if spk_norm:
                    rows = torch.as_tensor(row_of[idx])
                    logits = net.forward_from(h, lens, start, norm=(mu_fit[rows].to(self.device), sd_fit[rows].to(self.device)))
                else:
                    logits = net.forward_from(h, lens, start)
                loss = loss_fn(logits, target) if batch_loss is None else batch_loss(logits, target, idx, loss_fn)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], c.grad_clip)
                opt.step()
                step += 1
                total += loss.item() * len(idx)
                count += len(idx)
            train_loss = total / max(count, 1)

            # -- validation on whole utterances --
            record = {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 5),
                "frozen_blocks": n_frozen,
                "head_lr": opt.param_groups[0]["lr"],
            }
            if len(val_idx):
                if spk_norm:
                    items_val = [cache[i] for i in val_idx] if have_cache else [signals[i] for i in val_idx]
                    p_val = predict_pooled(net, [] if have_cache else items_val, level=n_frozen if have_cache else 0,
                                           features=items_val if have_cache else None, device=self.device,
                                           batch_seconds=c.eval_batch_seconds)
                    mu_v, sd_v = speaker_norms(p_val, spk[val_idx], g_mu, g_sd, c.min_speaker_utterances)
                    net.eval()
                    with torch.no_grad():
                        logits = net.from_pooled(((p_val - mu_v) / sd_v).to(self.device)).float().cpu().numpy()
                    _set_trainable(net, n_frozen, c.train_bn)
                elif have_cache:
                    logits = predict_logits(net, [], level=n_frozen, features=[cache[i] for i in val_idx],
                                            device=self.device, batch_seconds=c.eval_batch_seconds)
                else:
                    logits = predict_logits(net, [signals[i] for i in val_idx], device=self.device,
                                            batch_seconds=c.eval_batch_seconds)
                with torch.no_grad():
                    val_loss = float(loss_fn(torch.from_numpy(logits).to(self.device), torch.as_tensor(y[val_idx], device=self.device)))
                val_ua = _unweighted_accuracy(y[val_idx], logits.argmax(1))
                record.update(val_loss=round(val_loss, 5), val_ua=round(val_ua, 4))
                better = val_ua > best["ua"] + 1e-9 or (abs(val_ua - best["ua"]) <= 1e-9 and val_loss < best["loss"])
            else:
                val_loss, val_ua, better = math.nan, math.nan, True
            record.update(
                seconds=round(time.perf_counter() - t0, 3),
                cpu_seconds=round(time.process_time() - cpu0, 3),
                threads=torch.get_num_threads(),
            )
            history.append(record)
            if better and len(val_idx):
                best.update(ua=val_ua, loss=val_loss, epoch=epoch + 1, state=copy.deepcopy(net.state_dict()))
                bad_epochs = 0
            elif better:  # no validation: the last epoch is the result, nothing to copy
                best["epoch"] = epoch + 1
            else:
                bad_epochs += 1
            self._log(
                f"epoch {epoch + 1}/{c.epochs} frozen {n_frozen}/{n_blocks} loss {train_loss:.4f}"
                + (f" val_loss {val_loss:.4f} val_UA {val_ua:.3f}" if len(val_idx) else "")
                + f" ({record['seconds']:.1f}s, {record['threads']} thread(s))"
            )
            if len(val_idx) and bad_epochs >= c.patience and epoch + 1 >= c.min_epochs:
                self._log(f"early stop: no better validation UA for {c.patience} epochs; best epoch {best['epoch']}")
                break

        if best["state"] is not None:
            net.load_state_dict(best["state"])
        net.eval()
        if spk_norm and hasattr(net, "set_global_norm"):
            # fallback statistics (a speaker with too few utterances, or adapt=False): all training utterances
            p_all = predict_pooled(net, signals, device=self.device, batch_seconds=c.eval_batch_seconds)
            net.set_global_norm(*_stats(p_all))
        for p in net.parameters():
            p.requires_grad_(True)
        return TrainResult(
            strategy=strategy,
            epochs_run=len(history),
            best_epoch=int(best["epoch"]),
            best_val_ua=None if not len(val_idx) else float(best["ua"]),
            n_train=int(len(fit_idx)),
            n_val=int(len(val_idx)),
            val_speakers=val_speakers,
            seconds=round(time.perf_counter() - t_start, 2),
            history=history,
        )

    def _build_cache(self, net: BlockwiseNet, signals, level: int, budget: int):
        """Level-``level`` features of every signal, or None when they would exceed ``cache_max_mb``."""
        probe = _level_features(net, [signals[0]], level, self.device, budget)[0]
        total_frames = sum(int(net.level_lengths(len(s), 0, level)) for s in signals)
        mb = total_frames * probe.shape[0] * 4 / 2**20
        if mb > self.config.cache_max_mb:
            self._log(f"not caching level-{level} features ({mb:.0f} MB > cache_max_mb)")
            return None
        t0 = time.perf_counter()
        feats = _level_features(net, signals, level, self.device, budget)
        self._log(f"cached the frozen {level} block(s)' output: {mb:.1f} MB in {time.perf_counter() - t0:.1f}s")
        return feats


def _split(y: np.ndarray, speakers, fraction: float, seed: int):
    """Early-stopping split of the training utterances (``serkit.evaluation.validation_split``: whole speakers)."""
    if fraction <= 0 or len(y) < 4:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64), []
    from types import SimpleNamespace

    from ..evaluation import validation_split

    records = [SimpleNamespace(speaker=str(s), label=int(t)) for s, t in zip(speakers, y)]
    split = validation_split(records, fraction, seed)
    return split.train_idx, split.val_idx, (list(split.val_speakers) if split.by_speaker else [])


def _tensor(x: np.ndarray) -> torch.Tensor:
    """A float32 CPU tensor of a signal; read-only arrays (the shared audio cache) are copied."""
    x = np.asarray(x, dtype=np.float32)
    return torch.from_numpy(x if x.flags.writeable and x.flags.c_contiguous else x.copy())


def _train_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one joins the previous (batch norm needs two)."""
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def _pad_min(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad a signal symmetrically to at least ``n`` samples (the padding then counts as signal)."""
    if len(x) >= n:
        return x
    left = (n - len(x)) // 2
    return np.pad(x, (left, n - len(x) - left)).astype(np.float32)


def _random_crop(t: torch.Tensor, n: int | None, rng: np.random.Generator) -> torch.Tensor:
    """A random ``n``-long window of the last axis (the whole tensor when it is not longer)."""
    if n is None or t.shape[-1] <= n:
        return t
    s = int(rng.integers(0, t.shape[-1] - n + 1))
    return t[..., s : s + n]


def _random_crop_np(x: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or len(x) <= n:
        return x
    s = int(rng.integers(0, len(x) - n + 1))
    return x[s : s + n]

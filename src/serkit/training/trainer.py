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
  utterance split when there is one speaker; :func:`serkit.training.split.speaker_split`), keeping
  the weights of the best epoch (highest unweighted accuracy, then lowest loss);
* **speed** — the output of the frozen lower blocks never changes, so (without waveform
  augmentation) it is computed once per stage for every utterance and the random crops are cut
  from it; a frozen SoundNet8 then trains its head in well under a second per epoch.

The network contract is :class:`serkit.networks.blocks.BlockwiseNet` (:mod:`serkit.networks.waveform`
builds one around SoundNet8 and SoundNetRes). :meth:`Trainer.fit` runs named steps: prepare the
data and the split (``_prepare``), then per epoch the stage and its cache (``_stage``), the training
speakers' statistics (``_speaker_stats``), one pass (``_train_epoch``), validation (``_validate``)
and early-stopping bookkeeping (``_keep_best``), and finally the best epoch restored (``_finish``).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from ..audio import pad_to
from ..errors import ConfigError
from ..metrics import unweighted_accuracy
from ..networks.blocks import BlockwiseNet, as_tensor, level_features, pad_batch, predict_logits, predict_pooled
from ..runtime import default_threads
from ..speakers import MIN_SPEAKER_UTTERANCES, global_stats, speaker_stats
from .distributed import World, all_sum, average_batchnorm, gather, scale_loss, shard, world, wrap
from .losses import CombinedLoss, class_weights
from .split import speaker_split

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "STRATEGIES",
    "choose_strategy",
    "cosine_factor",
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
    domain_weight
        λ of train-time domain adaptation (``Trainer.fit(target_signals=..., domain_method=...)``):
        loss = CE/focal + λ · (Deep CORAL or MMD between the source and target pooled embeddings).
        1.0, the usual published default for both losses (Sun & Saenko set λ so that the
        classification and CORAL losses are of similar size by the end of training; we did not
        tune it, and never on test data).
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
    min_speaker_utterances: int = MIN_SPEAKER_UTTERANCES
    domain_weight: float = 1.0

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
        if not float(self.domain_weight) >= 0:
            raise ConfigError(f"train.domain_weight must be >= 0, got {self.domain_weight}")
        if self.crop_seconds is not None and self.crop_seconds <= 0:
            raise ConfigError(f"train.crop_seconds must be > 0 or null (whole utterances), got {self.crop_seconds}")

    @classmethod
    def from_dict(cls, options: dict | None) -> TrainConfig:
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
        if self.progress and world().rank == 0:  # one log for a data-parallel run
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
        target_signals: Sequence[np.ndarray] | None = None,
        domain_method: str | None = None,
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
        target_signals, domain_method
            Train-time domain adaptation: unlabelled waveforms of the target domain and
            ``"deep-coral"`` or ``"mmd"`` (:mod:`serkit.networks.domain_losses`). Every training
            batch is joined by as many random target crops (drawn with replacement), the two go
            through the network as one batch, and the loss adds ``domain_weight`` times the domain
            loss between the source and target pooled embeddings (the vector the head's batch norm
            and linear layer see; with speaker normalisation the source rows are standardised by
            their speakers and the target rows by the training statistics, as a single clip is at
            prediction time). Only the source rows reach the head, so its batch norm keeps source
            statistics; batch norms below the pooling see the mixed batch. Early stopping still
            scores the labelled validation speakers only.

        Inside an initialised ``torch.distributed`` process group of several ranks the fit is
        data-parallel (:mod:`serkit.training.distributed`): every rank calls it with the same data
        and trains on its shard of every batch; all ranks end with the same weights.
        """
        previous_threads = torch.get_num_threads()
        try:
            return self._fit(
                net,
                signals,
                targets,
                speakers,
                n_classes=n_classes,
                augmenter=augmenter,
                batch_loss=batch_loss,
                target_signals=target_signals,
                domain_method=domain_method,
            )
        finally:
            torch.set_num_threads(previous_threads)

    def _fit(
        self,
        net,
        signals,
        targets,
        speakers,
        *,
        n_classes,
        augmenter,
        batch_loss,
        target_signals=None,
        domain_method=None,
    ) -> TrainResult:
        c = self.config
        t_start = time.perf_counter()
        if world().distributed and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU
        run = self._prepare(
            net, signals, targets, speakers, n_classes=n_classes, augmenter=augmenter, batch_loss=batch_loss
        )
        if domain_method is not None:
            from ..networks.domain_losses import domain_loss

            run.domain_fn = domain_loss(domain_method)
            if not target_signals:
                raise ConfigError(f"{domain_method} needs unlabelled target signals (target_signals=)")
            run.target = [pad_to(np.asarray(s, dtype=np.float32), net.min_samples) for s in target_signals]
            self._log(f"domain adaptation: {domain_method}, λ={c.domain_weight}, {len(run.target)} target clips")
        for epoch in range(c.epochs):
            t0, cpu0 = time.perf_counter(), time.process_time()
            stage = self._stage(run, epoch)
            norms = self._speaker_stats(run, stage) if run.spk_norm else None
            train_loss = self._train_epoch(run, stage, norms)
            record = {
                "epoch": epoch + 1,
                "train_loss": round(train_loss, 5),
                "frozen_blocks": stage.n_frozen,
                "head_lr": run.opt.param_groups[0]["lr"],
            }
            val_loss, val_ua = self._validate(run, stage, norms) if len(run.val_idx) else (math.nan, math.nan)
            if len(run.val_idx):
                record.update(val_loss=round(val_loss, 5), val_ua=round(val_ua, 4))
            record.update(
                seconds=round(time.perf_counter() - t0, 3),
                cpu_seconds=round(time.process_time() - cpu0, 3),
                threads=torch.get_num_threads(),
            )
            run.history.append(record)
            self._keep_best(run, epoch, val_loss, val_ua)
            self._log(
                f"epoch {epoch + 1}/{c.epochs} frozen {stage.n_frozen}/{net.n_blocks} loss {train_loss:.4f}"
                + (f" val_loss {val_loss:.4f} val_UA {val_ua:.3f}" if len(run.val_idx) else "")
                + f" ({record['seconds']:.1f}s, {record['threads']} thread(s))"
            )
            if self._should_stop(run, epoch):
                self._log(
                    f"early stop: no better validation UA for {c.patience} epochs; best epoch {run.best['epoch']}"
                )
                break
        return self._finish(run, t_start)

    # -- the steps of a fit -------------------------------------------------------------------------
    def _prepare(self, net, signals, targets, speakers, *, n_classes, augmenter, batch_loss) -> _Run:
        """Check the data, seed, split off the validation speakers, build the loss and the optimiser."""
        c = self.config
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
            raise ConfigError(
                f"got {len(signals)} signals, {len(y)} targets and {len(speakers)} speakers; they must match"
            )
        if len(y) < 2 or len(np.unique(y)) < 2:
            raise ConfigError(
                f"training needs at least two classes; got {len(np.unique(y))} class(es) in {len(y)} utterances"
            )
        signals = [pad_to(np.asarray(s, dtype=np.float32), net.min_samples) for s in signals]
        fit_idx, val_idx, val_speakers = _validation_split(y, speakers, c.val_fraction, c.seed)
        w = world()
        if w.distributed:
            if len(fit_idx) < 2 * w.size:
                raise ConfigError(
                    f"data-parallel training on {w.size} processes needs at least {2 * w.size} training "
                    f"utterances (two per process in a batch); got {len(fit_idx)}: use fewer processes"
                )
            if c.batch_size < 2 * w.size:
                raise ConfigError(
                    f"train.batch_size {c.batch_size} split over {w.size} processes leaves fewer than two clips "
                    f"per process (batch norm needs two); set train.batch_size >= {2 * w.size} or use fewer processes"
                )
            # the same order and crops on every rank (rng), but each rank's own dropout and SpecAugment draws
            torch.manual_seed(c.seed + w.rank)
        strategy = choose_strategy(len(y)) if c.strategy == "auto" else c.strategy

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
        crop = int(round(c.crop_seconds * net.sampling_rate)) if c.crop_seconds else None
        if crop is not None:
            crop = max(crop, net.min_samples)
        self._log(
            f"strategy {strategy} ({'chosen by auto for ' + str(len(y)) + ' utterances' if c.strategy == 'auto' else 'as asked'}); "
            f"{len(fit_idx)} train / {len(val_idx)} validation utterances"
            + (f" (validation speakers {', '.join(val_speakers)})" if val_speakers else "")
            + (f"; data-parallel on {w.size} processes" if w.distributed else "")
        )
        return _Run(
            net=net,
            signals=signals,
            y=y,
            spk=np.asarray([str(s) for s in speakers]),
            fit_idx=fit_idx,
            val_idx=val_idx,
            val_speakers=val_speakers,
            strategy=strategy,
            loss_fn=loss_fn,
            opt=opt,
            period_steps=c.cosine_period * steps_per_epoch,
            crop=crop,
            budget=int(c.eval_batch_seconds * net.sampling_rate),
            augmenter=augmenter,
            batch_loss=batch_loss,
            rng=rng,
            spk_norm=c.normalisation == "speaker",
            world=w,
        )

    def _stage(self, run: _Run, epoch: int) -> _Stage:
        """Freeze this epoch's lower blocks and (re)build the cache of their output when the stage changed."""
        c, net = self.config, run.net
        torch.set_num_threads(self.threads or default_threads())
        n_frozen = self._n_frozen(run.strategy, epoch, net.n_blocks)
        _set_trainable(net, n_frozen, c.train_bn)
        # the frozen prefix's output of the clean whole utterances: exact for speaker statistics
        # and validation even while augmenting; training crops come from it only without augmentation
        use_cache = c.cache_frozen_features and n_frozen > 0
        if use_cache and run.cache_level != n_frozen:
            run.cache = self._build_cache(net, run.signals, n_frozen, run.budget, run.world)
            run.cache_level = n_frozen if run.cache is not None else -1
            if run.target is not None:
                run.target_cache = (
                    None
                    if run.cache is None
                    else gather(
                        lambda ix: level_features(net, [run.target[i] for i in ix], n_frozen, self.device, run.budget),
                        np.arange(len(run.target)),
                        run.world,
                    )
                )
            _set_trainable(net, n_frozen, c.train_bn)
        if run.world.distributed:  # DDP hooks the parameters that need gradients now: a new stage, a new wrapper
            key = tuple(p.requires_grad for p in net.parameters())
            if key != run.ddp_key:
                run.ddp = None
                run.ddp, run.ddp_key = wrap(net, self.device), key
        have_cache = use_cache and run.cache_level == n_frozen
        cached = have_cache and run.augmenter is None  # training batches cut from the cache
        level = n_frozen if cached else 0
        crop_len = None if run.crop is None else int(net.level_lengths(run.crop, 0, level)) if level else run.crop
        return _Stage(n_frozen=n_frozen, have_cache=have_cache, cached=cached, level=level, crop_len=crop_len)

    def _pooled(self, run: _Run, stage: _Stage, idx) -> torch.Tensor:
        """Whole-utterance pooled vectors of ``idx`` (from the cache of the frozen prefix when there is one)."""
        return gather(lambda ix: self._pooled_here(run, stage, ix), idx, run.world)

    def _pooled_here(self, run: _Run, stage: _Stage, idx) -> torch.Tensor:
        if stage.have_cache:
            items = [run.cache[i] for i in idx]
            return predict_pooled(
                run.net,
                [],
                level=stage.n_frozen,
                features=items,
                device=self.device,
                batch_seconds=self.config.eval_batch_seconds,
            )
        return predict_pooled(
            run.net,
            [run.signals[i] for i in idx],
            level=0,
            device=self.device,
            batch_seconds=self.config.eval_batch_seconds,
        )

    def _speaker_stats(self, run: _Run, stage: _Stage) -> dict:
        """This epoch's statistics of every training speaker, from its whole utterances (no gradient)."""
        c = self.config
        p_fit = self._pooled(run, stage, run.fit_idx)
        g_mu, g_sd = global_stats(p_fit)
        mu_fit, sd_fit = speaker_stats(p_fit, run.spk[run.fit_idx], g_mu, g_sd, c.min_speaker_utterances)
        row_of = np.full(len(run.y), -1)
        row_of[run.fit_idx] = np.arange(len(run.fit_idx))
        run.net.train()
        _set_trainable(run.net, stage.n_frozen, c.train_bn)
        return {"global": (g_mu, g_sd), "fit": (mu_fit, sd_fit), "row_of": row_of}

    def _train_epoch(self, run: _Run, stage: _Stage, norms: dict | None) -> float:
        """One pass over the training part in random crops; returns the mean training loss.

        Data-parallel, every rank walks the same batches and draws every clip's crop (so the
        generator stays in step), builds only its shard of the batch, and scales its loss so that
        DDP's gradient average is the whole batch's mean gradient.
        """
        c, net, rng, crop, w = self.config, run.net, run.rng, run.crop, run.world
        order = rng.permutation(run.fit_idx)
        total, count = 0.0, 0
        for idx in _train_batches(order, c.batch_size, w.size):
            mine = shard(len(idx), w.rank, w.size)
            keep = np.zeros(len(idx), dtype=bool)
            keep[mine] = True
            items = []
            for k, i in enumerate(idx):
                if stage.cached:
                    item = _random_crop(run.cache[i], stage.crop_len, rng)
                elif run.augmenter is not None:
                    # augment a little more than the crop (speed/stretch change the length); data-parallel,
                    # each clip's augmentation has its own generator, seeded from the shared one
                    r = rng if not w.distributed else np.random.default_rng(int(rng.integers(2**63)))
                    if not keep[k]:
                        continue
                    x = _random_crop_np(run.signals[i], None if crop is None else int(crop * 1.25), r)
                    item = _random_crop(as_tensor(pad_to(run.augmenter(x, r), net.min_samples)), crop, r)
                else:
                    item = _random_crop(as_tensor(run.signals[i]), crop, rng)
                if keep[k]:
                    items.append(item)
            idx = idx[mine]
            n_source = len(items)
            if run.target is not None:  # as many unlabelled target crops, through the network with the batch
                for k, j in enumerate(rng.integers(0, len(run.target), size=len(keep))):
                    source = run.target_cache[j] if stage.cached else as_tensor(run.target[j])
                    item = _random_crop(source, stage.crop_len if stage.cached else crop, rng)
                    if keep[k]:
                        items.append(item)
            h, lens = pad_batch(items, [int(t.shape[-1]) for t in items])
            h, lens = h.to(self.device), lens.to(self.device)
            target = torch.as_tensor(run.y[idx], device=self.device)
            start = stage.level
            if not stage.cached and stage.n_frozen > 0:
                with torch.no_grad():
                    h, lens = net.run_blocks(h, lens, 0, stage.n_frozen)
                start = stage.n_frozen
            for g in run.opt.param_groups:
                g["lr"] = g["initial_lr"] * cosine_factor(run.step, run.period_steps, c.min_lr_ratio)

            def step(net, h=h, lens=lens, start=start, idx=idx, n_source=n_source):
                if run.target is not None:
                    return self._domain_forward(run, net, h, lens, start, idx, norms, n_source)
                if norms is not None:
                    rows = torch.as_tensor(norms["row_of"][idx])
                    mu_fit, sd_fit = norms["fit"]
                    norm = (mu_fit[rows].to(self.device), sd_fit[rows].to(self.device))
                    return net.forward_from(h, lens, start, norm=norm), None
                return net.forward_from(h, lens, start), None

            logits, domain = step(net) if run.ddp is None else run.ddp(step)
            loss = (
                run.loss_fn(logits, target)
                if run.batch_loss is None
                else run.batch_loss(logits, target, idx, run.loss_fn)
            )
            if domain is not None:
                loss = loss + c.domain_weight * domain
            run.opt.zero_grad(set_to_none=True)
            scale_loss(loss, len(idx), len(keep), w).backward()
            if c.grad_clip:
                nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], c.grad_clip)
            run.opt.step()
            run.step += 1
            total += loss.item() * len(idx)
            count += len(idx)
        if w.distributed:
            total, count = all_sum([total, count], w)
            average_batchnorm(net, w)
        return total / max(count, 1)

    def _domain_forward(self, run: _Run, net, h, lens, start: int, idx, norms: dict | None, n_source: int):
        """Source logits and the domain loss of one joint batch (source rows first, then target rows).

        Returns ``(logits of the source rows, domain loss or None)``; the loss is None when nothing
        below the pooled embedding is trainable at this stage (progressive training's head-only
        stage with a parameter-free pooling) — under ``strategy: freeze`` that is an error.
        """
        p = net.pooled_from(h, lens, start)
        p_s, p_t = p[:n_source], p[n_source:]
        if norms is not None:
            rows = torch.as_tensor(norms["row_of"][idx])
            mu_fit, sd_fit = norms["fit"]
            g_mu, g_sd = norms["global"]
            p_s = (p_s - mu_fit[rows].to(self.device)) / sd_fit[rows].to(self.device)
            p_t = (p_t - g_mu.to(self.device)) / g_sd.to(self.device)
        logits = net.from_pooled(p_s)
        if not p.requires_grad:
            if run.strategy == "freeze":
                raise ConfigError(
                    "train-time domain adaptation aligns the pooled embedding, but with strategy 'freeze' and a "
                    "parameter-free pooling nothing below it learns: use pool: attention, strategy progressive or "
                    "full, or adapt the trained model with serkit adapt --adapt-method adabn"
                )
            return logits, None
        return logits, run.domain_fn(p_s.float(), p_t.float())

    def _validate(self, run: _Run, stage: _Stage, norms: dict | None) -> tuple[float, float]:
        """Loss and UA of the validation speakers' whole utterances (their own speaker statistics)."""
        c, net, val_idx = self.config, run.net, run.val_idx
        if norms is not None:
            p_val = self._pooled(run, stage, val_idx)
            g_mu, g_sd = norms["global"]
            mu_v, sd_v = speaker_stats(p_val, run.spk[val_idx], g_mu, g_sd, c.min_speaker_utterances)
            net.eval()
            with torch.no_grad():
                logits = net.from_pooled(((p_val - mu_v) / sd_v).to(self.device)).float().cpu().numpy()
            _set_trainable(net, stage.n_frozen, c.train_bn)
        elif stage.have_cache:
            logits = gather(
                lambda ix: predict_logits(
                    net,
                    [],
                    level=stage.n_frozen,
                    features=[run.cache[i] for i in ix],
                    device=self.device,
                    batch_seconds=c.eval_batch_seconds,
                ),
                val_idx,
                run.world,
            )
        else:
            logits = gather(
                lambda ix: predict_logits(
                    net, [run.signals[i] for i in ix], device=self.device, batch_seconds=c.eval_batch_seconds
                ),
                val_idx,
                run.world,
            )
        with torch.no_grad():
            val_loss = float(
                run.loss_fn(
                    torch.from_numpy(logits).to(self.device), torch.as_tensor(run.y[val_idx], device=self.device)
                )
            )
        return val_loss, unweighted_accuracy(run.y[val_idx], logits.argmax(1))

    def _keep_best(self, run: _Run, epoch: int, val_loss: float, val_ua: float) -> None:
        """Early-stopping bookkeeping: the best epoch (highest UA, then lowest loss) and its weights."""
        best = run.best
        if not len(run.val_idx):  # no validation: the last epoch is the result, nothing to copy
            best["epoch"] = epoch + 1
            return
        if val_ua > best["ua"] + 1e-9 or (abs(val_ua - best["ua"]) <= 1e-9 and val_loss < best["loss"]):
            best.update(ua=val_ua, loss=val_loss, epoch=epoch + 1, state=copy.deepcopy(run.net.state_dict()))
            run.bad_epochs = 0
        else:
            run.bad_epochs += 1

    def _should_stop(self, run: _Run, epoch: int) -> bool:
        c = self.config
        return bool(len(run.val_idx)) and run.bad_epochs >= c.patience and epoch + 1 >= c.min_epochs

    def _finish(self, run: _Run, t_start: float) -> TrainResult:
        """Restore the best epoch's weights, set the fallback speaker statistics, report."""
        c, net, best = self.config, run.net, run.best
        if best["state"] is not None:
            net.load_state_dict(best["state"])
        net.eval()
        if run.spk_norm:
            # fallback statistics (a speaker with too few utterances, or adapt=False): all training utterances
            p_all = gather(
                lambda ix: predict_pooled(
                    net, [run.signals[i] for i in ix], device=self.device, batch_seconds=c.eval_batch_seconds
                ),
                np.arange(len(run.signals)),
                run.world,
            )
            net.set_global_norm(*global_stats(p_all))
        for p in net.parameters():
            p.requires_grad_(True)
        return TrainResult(
            strategy=run.strategy,
            epochs_run=len(run.history),
            best_epoch=int(best["epoch"]),
            best_val_ua=None if not len(run.val_idx) else float(best["ua"]),
            n_train=int(len(run.fit_idx)),
            n_val=int(len(run.val_idx)),
            val_speakers=run.val_speakers,
            seconds=round(time.perf_counter() - t_start, 2),
            history=run.history,
        )

    def _build_cache(self, net: BlockwiseNet, signals, level: int, budget: int, w: World):
        """Level-``level`` features of every signal, or None when they would exceed ``cache_max_mb``."""
        probe = level_features(net, [signals[0]], level, self.device, budget)[0]
        total_frames = sum(int(net.level_lengths(len(s), 0, level)) for s in signals)
        mb = total_frames * probe.shape[0] * 4 / 2**20
        if mb > self.config.cache_max_mb:
            self._log(f"not caching level-{level} features ({mb:.0f} MB > cache_max_mb)")
            return None
        t0 = time.perf_counter()
        feats = gather(
            lambda ix: level_features(net, [signals[i] for i in ix], level, self.device, budget),
            np.arange(len(signals)),
            w,
        )
        self._log(f"cached the frozen {level} block(s)' output: {mb:.1f} MB in {time.perf_counter() - t0:.1f}s")
        return feats


@dataclass
class _Run:
    """The state one :meth:`Trainer.fit` carries from epoch to epoch."""

    net: BlockwiseNet
    signals: list
    y: np.ndarray
    spk: np.ndarray
    fit_idx: np.ndarray
    val_idx: np.ndarray
    val_speakers: list
    strategy: str
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    period_steps: float
    crop: int | None
    budget: int
    augmenter: Callable | None
    batch_loss: Callable | None
    rng: np.random.Generator
    spk_norm: bool
    cache_level: int = -1  # level and features of the frozen prefix, per utterance
    cache: list | None = None
    target: list | None = None  # unlabelled target signals (train-time domain adaptation)
    target_cache: list | None = None  # their frozen-prefix features, when the source ones are cached
    domain_fn: Callable | None = None
    world: World = field(default_factory=World)  # the data-parallel process group (one process: none)
    ddp: nn.Module | None = None  # the DistributedDataParallel wrapper of this stage's trainable parameters
    ddp_key: tuple | None = None
    step: int = 0
    bad_epochs: int = 0
    best: dict = field(default_factory=lambda: {"ua": -1.0, "loss": math.inf, "epoch": 0, "state": None})
    history: list = field(default_factory=list)


@dataclass(frozen=True)
class _Stage:
    """One epoch's frozen blocks and where its training batches come from."""

    n_frozen: int
    have_cache: bool  # the frozen prefix's output is cached (speaker statistics, validation)
    cached: bool  # training crops are cut from the cache (no waveform augmentation)
    level: int  # the level training batches start at
    crop_len: int | None  # crop length at that level


def _validation_split(y: np.ndarray, speakers, fraction: float, seed: int):
    """Early-stopping split of the training utterances (:func:`serkit.training.split.speaker_split`: whole speakers)."""
    if fraction <= 0 or len(y) < 4:
        return np.arange(len(y)), np.zeros(0, dtype=np.int64), []
    split = speaker_split([str(s) for s in speakers], [int(t) for t in y], fraction, seed)
    return split.train_idx, split.val_idx, (list(split.val_speakers) if split.by_speaker else [])


def _train_batches(order: np.ndarray, batch_size: int, n_shards: int = 1) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch too small to give each of ``n_shards``
    processes two clips joins the previous (batch norm needs two)."""
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2 * n_shards:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


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

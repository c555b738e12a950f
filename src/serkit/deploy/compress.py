"""Compression for deployment: structured channel pruning, knowledge distillation, quantisation-aware training.

Every function takes a fitted ``soundnet`` / ``soundnet-res`` classifier (distillation: any fitted
classifier as the teacher) and returns a new fitted classifier that saves as a normal model
directory (:func:`serkit.artifact.save_model`) and exports with ``serkit export``:

* :func:`prune` removes the least important convolution channels physically (the producing
  convolution's filters and batch norm, the consuming convolution's input channels, and the head's
  pooled dimensions; the surgery is :mod:`serkit.networks.pruning`), then fine-tunes briefly with
  :class:`serkit.training.Trainer`. The kept channel counts are recorded in the model's config
  (``channels``), so loading builds the network at those widths.
* :func:`distil` trains a ``soundnet-res`` student on a teacher's soft targets (KL divergence at
  temperature T, mixed with the hard-label loss).
* :func:`quantisation_aware` fine-tunes with int8 fake quantisation (per-channel symmetric weights,
  per-tensor uint8 activations at every convolution's and linear layer's input), the grid
  ``serkit export --quantise int8`` later uses; ``prune(..., qat=True)`` does the same in the
  pruning fine-tune.

Requires torch (the neural families' own dependency). ``serkit compress`` runs
:func:`serkit.api.compress`, which reads the model folder and the training corpora and calls these.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = [
    "DEFAULT_STUDENT",
    "check_prunable",
    "distil",
    "prune",
    "quantisation_aware",
]

#: the student :func:`distil` trains by default: the shipped ``soundnet-res`` recipe's model section
DEFAULT_STUDENT = {
    "family": "soundnet-res",
    "pool": "meanmax",
    "strategy": "full",
    "train": {"normalisation": "speaker"},
}


# -- pruning ---------------------------------------------------------------------------------------


def check_prunable(model, what: str = "pruning") -> None:
    """Refuse a model that does not declare itself prunable (``Classifier.prunable``), or is not fitted."""
    if not model.prunable:
        raise ConfigError(
            f"{what} works on the soundnet and soundnet-res families, not {getattr(model, 'family', type(model).__name__)!r}; "
            "distillation (serkit compress --distil) can compress other families into a soundnet-res student"
        )
    model._check_fitted()


def _keep(importance, *, amount, threshold):
    """Indices to keep: the ``1 - amount`` most important channels, or those with importance >= ``threshold`` × the largest."""
    import torch

    n = len(importance)
    if amount is not None:
        n_keep = max(1, n - round(amount * n))
    else:
        top = float(importance.max())
        n_keep = max(1, int((importance >= threshold * top).sum())) if top > 0 else 1
    order = torch.argsort(importance, descending=True, stable=True)[:n_keep]
    return torch.sort(order).values


def prune(
    model,
    utterances: Sequence | None = None,
    *,
    amount: float | None = None,
    threshold: float | None = None,
    finetune_epochs: int = 3,
    qat: bool = False,
    train: dict | None = None,
    progress: bool = False,
):
    """Structured channel pruning of a fitted SoundNet classifier, then a short fine-tune.

    Importance of a channel is the L1 norm of its batch-norm-folded filter (``|gamma| / sigma``
    times the convolution filter; for a SoundNetRes bottleneck channel also times its depthwise
    filter's L1 norm). The least important channels are removed from every group (see
    :func:`serkit.networks.pruning.channel_groups`) and their constant part folded into the consumers' biases.

    Parameters
    ----------
    model
        A fitted ``soundnet`` or ``soundnet-res`` classifier; it is not modified.
    utterances
        Labelled training utterances for the fine-tune (the model's labels); not needed with
        ``finetune_epochs=0``.
    amount
        Fraction of every group's channels to remove, in (0, 1) (at least one channel stays).
    threshold
        Alternatively: remove the channels whose importance is below ``threshold`` times the
        largest in their group, in (0, 1].
    finetune_epochs
        Epochs of :class:`serkit.training.Trainer` fine-tuning (strategy ``full``; early stopping
        on held-out training speakers as in training); 0 for none.
    qat
        Fine-tune with int8 fake quantisation (see :func:`quantisation_aware`).
    train
        Further :class:`serkit.training.TrainConfig` overrides for the fine-tune (``lr``, ``augment``, …).
    progress
        Print the trainer's epoch lines on stderr.

    Returns
    -------
    SoundNetClassifier
        A new fitted classifier with ``channels`` in its config and ``compression_`` (a dict: groups'
        channel counts before/after, parameters before/after, fine-tune epochs).
    """
    check_prunable(model, "pruning")
    if (amount is None) == (threshold is None):
        raise ConfigError("pass exactly one of amount (fraction of channels to remove) or threshold")
    if amount is not None and not 0 < amount < 1:
        raise ConfigError(f"prune amount {amount} must be a fraction in (0, 1), e.g. 0.5 removes half the channels")
    if threshold is not None and not 0 < threshold <= 1:
        raise ConfigError(f"prune threshold {threshold} must be in (0, 1] (a fraction of the largest importance)")
    if finetune_epochs < 0:
        raise ConfigError(f"finetune_epochs must be >= 0, got {finetune_epochs}")
    from ..networks.pruning import channel_groups, count_parameters

    net = copy.deepcopy(model.net_).cpu().eval()
    before_params = count_parameters(net)
    groups = channel_groups(net)
    plan = {g.name: _keep(g.importance(), amount=amount, threshold=threshold) for g in groups}
    sizes_before = {g.name: g.size for g in groups}
    for g in groups:  # lowest first: a group's folded bias already holds the compensation from below
        g.shrink(plan[g.name], compensate=True)
    channels = {**dict(model.channels or {}), **{g.name: g.size for g in groups}}
    pruned = _rebuilt(model, net, channels)
    pruned.compression_ = {
        "method": "prune",
        "importance": "L1 norm of the BN-folded filters",
        "amount": amount,
        "threshold": threshold,
        "channels_before": sizes_before,
        "channels_after": {g.name: g.size for g in groups},
        "parameters_before": before_params,
        "parameters_after": count_parameters(net),
        "finetune_epochs": int(finetune_epochs),
        "qat": bool(qat),
    }
    if finetune_epochs:
        _finetune(pruned, utterances, finetune_epochs, qat=qat, train=train, progress=progress)
    return pruned


def _rebuilt(model, net, channels):
    """A new classifier of ``model``'s kind around ``net`` (config with ``channels``), fitted state copied."""
    options = {k: v for k, v in model.config().items() if k != "fitted"}
    options["channels"] = dict(channels) if channels else None
    new = type(model)(**options)
    new.net_ = net.eval()
    new.labels_ = list(model.labels_)
    new.strategy_ = model.strategy_
    new.training_ = dict(model.training_)
    return new


def _training_data(model, utterances):
    from ..models.neural import read_cached

    if not utterances:
        raise ConfigError("fine-tuning needs the training utterances; pass --corpus NAME:ROOT (or --epochs 0)")
    index = {lab: i for i, lab in enumerate(model.labels_)}
    unknown = sorted({str(u.label) for u in utterances} - set(index))
    if unknown:
        raise ConfigError(
            f"utterances carry labels {unknown} that the model does not know ({', '.join(model.labels_)}); "
            "use the corpus and --label-set the model was trained with"
        )
    signals = [read_cached(u.path, model.sampling_rate, u.start, u.end) for u in utterances]
    targets = np.array([index[str(u.label)] for u in utterances])
    return signals, targets, [str(u.speaker) for u in utterances]


def _finetune(model, utterances, epochs: int, *, qat: bool, train: dict | None, progress: bool):
    """Fine-tune ``model.net_`` in place with the Trainer (all blocks, the model's own training options)."""
    from ..training.trainer import TrainConfig, Trainer

    signals, targets, speakers = _training_data(model, utterances)
    options = {"strategy": "full", "epochs": int(epochs), "min_epochs": min(int(epochs), 5), **dict(train or {})}
    config = TrainConfig.from_dict({**model._train_config().to_dict(), **options})  # unknown keys: the usual message
    net = model.net_
    hooks = _attach_fake_quant(net) if qat else None
    try:
        result = Trainer(config, progress=progress).fit(net, signals, targets, speakers, n_classes=len(model.labels_))
    finally:
        if hooks is not None:
            _detach_fake_quant(net, hooks)
    model.net_ = net.eval()
    model.training_ = {**result.to_dict(), "finetune_of": model.training_.get("best_epoch")}
    return model


# -- quantisation-aware training ------------------------------------------------------------------


def quantisation_aware(
    model, utterances: Sequence, *, epochs: int = 3, train: dict | None = None, progress: bool = False
):
    """Fine-tune a fitted SoundNet classifier with int8 fake quantisation; returns a new classifier.

    During the fine-tune every convolution and linear layer sees its weights rounded to the
    per-output-channel symmetric int8 grid (scale = max |w| / 127, the grid onnxruntime's static
    per-channel quantisation uses; rounding per output channel commutes with the batch-norm folding
    done at export) and its input rounded to a per-tensor uint8 grid whose range is a running
    average of the batches' min/max; gradients pass straight through the rounding. The result keeps
    the rounded weights, so ``serkit export --quantise int8`` reproduces them exactly and only the
    activation ranges are re-calibrated.
    """
    check_prunable(model, "quantisation-aware training")
    if epochs < 1:
        raise ConfigError(f"quantisation-aware training needs at least 1 epoch, got {epochs}")
    new = _rebuilt(model, copy.deepcopy(model.net_).cpu(), model.channels)
    new.compression_ = {
        "method": "qat",
        "epochs": int(epochs),
        "weights": "int8 per-channel symmetric",
        "activations": "uint8 per-tensor, running min/max",
    }
    return _finetune(new, utterances, epochs, qat=True, train=train, progress=progress)


def _weight_fake_quant():
    import torch
    from torch import nn

    class PerChannelInt8(nn.Module):
        def forward(self, w):
            scale = w.detach().abs().flatten(1).amax(1).clamp(min=1e-12) / 127.0
            zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
            return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)

    return PerChannelInt8()


class _ActivationObserver:
    """Running min/max of a layer's input (momentum 0.9) and fake quantisation to uint8 with it."""

    def __init__(self):
        self.lo = self.hi = None

    def __call__(self, module, args):
        import torch

        x = args[0]
        if module.training:
            lo, hi = float(x.detach().min()), float(x.detach().max())
            self.lo = lo if self.lo is None else 0.9 * self.lo + 0.1 * lo
            self.hi = hi if self.hi is None else 0.9 * self.hi + 0.1 * hi
        if self.lo is None:
            return None
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        zero = int(min(255, max(0, round(-lo / scale))))
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255), *args[1:])


def _attach_fake_quant(net):
    from torch import nn
    from torch.nn.utils import parametrize

    hooks = []
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            parametrize.register_parametrization(m, "weight", _weight_fake_quant())
            hooks.append((m, m.register_forward_pre_hook(_ActivationObserver())))
    return hooks


def _detach_fake_quant(net, hooks) -> None:
    """Remove the fake quantisation, keeping the weights on their int8 grid (what the int8 export computes)."""
    from torch.nn.utils import parametrize

    for m, handle in hooks:
        handle.remove()
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


# -- distillation ----------------------------------------------------------------------------------


def _windows(durations: Sequence[float], seconds: float | None) -> list[tuple[int, float, float]]:
    """Fixed ``(utterance, start, end)`` windows: the whole utterance when it is at most 1.5 × ``seconds``
    long, else consecutive ``seconds`` windows, the last one ending at the utterance's end."""
    out = []
    for i, d in enumerate(durations):
        if seconds is None or d <= 1.5 * seconds:
            out.append((i, 0.0, d))
            continue
        n = math.ceil(d / seconds)
        starts = [k * seconds for k in range(n - 1)] + [d - seconds]
        out.extend((i, s, s + seconds) for s in starts)
    return out


def distil(
    teacher,
    utterances: Sequence,
    *,
    student: dict | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int | None = None,
    progress: bool = False,
):
    """Train a ``soundnet-res`` student to reproduce a teacher's probabilities.

    The loss is ``alpha * T² * KL(teacher_T ‖ student_T) + (1 - alpha) * hard``, where ``_T`` are
    distributions softened at temperature ``T`` (the teacher's ``p^(1/T)``, renormalised, which
    equals softmax(logits / T)) and ``hard`` is the student recipe's own loss on the labels
    (label-smoothed CE + focal, balanced class weights).

    Crops: the teacher's probabilities are computed once, on fixed windows that the student then
    trains on unchanged — each utterance whole when it is at most 1.5 × the student's
    ``crop_seconds`` (every EmoDB utterance), else cut into consecutive ``crop_seconds`` windows.
    A target therefore always describes exactly the audio the student sees; random crops would need
    a teacher pass per crop per epoch (a classic or fusion teacher costs seconds per clip). The
    teacher predicts each window at its own sampling rate with its speakers (speaker-adapted where
    it supports it). Waveform augmentation of the student is off (a changed clip would no longer
    match its target).

    Parameters
    ----------
    teacher
        Any fitted serkit classifier (``predict_proba``, ``labels_``, ``sampling_rate``).
    utterances
        Labelled training utterances (labels among the teacher's).
    student
        The student's model section (``family: soundnet-res`` and its options); default
        :data:`DEFAULT_STUDENT`, the shipped ``soundnet-res`` recipe.
    temperature
        Softening temperature T (> 0); 1 matches the probabilities as they are.
    alpha
        Weight of the distillation term in [0, 1]; 0 is plain supervised training.
    epochs
        Largest number of epochs (default: the student recipe's, 30); early stopping on held-out
        training speakers' UA as in :class:`serkit.training.Trainer`.

    Returns
    -------
    SoundNetResClassifier
        Fitted, with ``compression_`` (teacher, T, alpha, agreement with the teacher on the training windows).
    """
    from ..models import build_model
    from ..models.neural import SoundNetClassifier, read_cached

    if not temperature > 0:
        raise ConfigError(f"distillation temperature {temperature} must be > 0 (typical: 2-8)")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"distillation alpha {alpha} must be in [0, 1] (the weight of the teacher's soft targets)")
    if not hasattr(teacher, "labels_"):
        raise ConfigError("the teacher is not fitted; train it first (serkit train) or load a model folder")
    section = dict(student or DEFAULT_STUDENT)
    section.setdefault("family", "soundnet-res")
    if (
        section["family"] not in ("soundnet-res", "soundnet")
        or section.get("backbone", "soundnet-res") != "soundnet-res"
    ):
        raise ConfigError(f"the distillation student must be family soundnet-res, got {section}")
    section["family"] = "soundnet-res"
    train = dict(section.get("train") or {})
    train["augment"] = None
    if epochs is not None:
        train["epochs"] = int(epochs)
    section["train"] = train
    model = build_model(section)
    if not isinstance(model, SoundNetClassifier):  # pragma: no cover - the registry maps soundnet-res here
        raise ConfigError("the distillation student must be a soundnet-res model")
    config = model._train_config()

    utterances = list(utterances)
    labels = list(teacher.labels_)
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({str(u.label) for u in utterances} - set(index))
    if not utterances or unknown:
        raise ConfigError(
            f"distillation needs utterances labelled with the teacher's labels ({', '.join(labels)}); "
            f"got {'none' if not utterances else 'unknown labels ' + str(unknown)}"
        )
    sr_s, sr_t = int(model.sampling_rate), int(teacher.sampling_rate)
    waves_s = [read_cached(u.path, sr_s, u.start, u.end) for u in utterances]
    windows = _windows([len(x) / sr_s for x in waves_s], config.crop_seconds)
    t0 = time.perf_counter()
    teacher_signals, student_signals = [], []
    for i, s, e in windows:
        u = utterances[i]
        w_t = read_cached(u.path, sr_t, u.start, u.end)
        teacher_signals.append(np.ascontiguousarray(_cut(w_t, s, e, sr_t)))
        student_signals.append(_cut(waves_s[i], s, e, sr_s))
    speakers = [str(utterances[i].speaker) for i, _, _ in windows]
    soft = np.asarray(teacher.predict_proba(teacher_signals, speakers=speakers), dtype=np.float64)
    _log(
        progress,
        f"teacher probabilities for {len(windows)} windows of {len(utterances)} utterances "
        f"({time.perf_counter() - t0:.1f}s)",
    )
    targets = np.array([index[str(utterances[i].label)] for i, _, _ in windows])
    import torch

    torch.manual_seed(config.seed)  # the student's initial weights are part of the run
    net = model._build_net(len(labels), pretrained=False)
    result = _train_student(
        net, student_signals, soft, targets, speakers, config, temperature=temperature, alpha=alpha, progress=progress
    )
    model.net_ = net.eval()
    model.labels_ = labels
    model.strategy_ = "full"
    model.training_ = result
    agree = float(np.mean(model.predict_proba(student_signals, speakers=speakers).argmax(1) == soft.argmax(1)))
    model.compression_ = {
        "method": "distil",
        "teacher": {"family": getattr(teacher, "family", type(teacher).__name__)},
        "temperature": float(temperature),
        "alpha": float(alpha),
        "windows": len(windows),
        "train_agreement_with_teacher": round(agree, 4),
        "teacher_train_ua": round(_ua(targets, soft.argmax(1)), 4),
    }
    return model


def _cut(x: np.ndarray, start: float, end: float, sampling_rate: int) -> np.ndarray:
    """Samples of ``x`` from ``start`` to ``end`` seconds (at least one)."""
    a = round(start * sampling_rate)
    return x[a : max(round(end * sampling_rate), a + 1)]


def _ua(y, pred) -> float:
    from ..metrics import unweighted_accuracy

    return unweighted_accuracy(y, pred)


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"serkit compress: {msg}", file=sys.stderr, flush=True)


def _train_student(
    net, signals, soft, y, speakers, config, *, temperature: float, alpha: float, progress: bool
) -> dict:
    """Train ``net`` on the fixed windows with the distillation loss (:class:`serkit.training.Trainer`
    with a batch-loss hook); the best epoch by held-out speakers' UA is kept."""
    import dataclasses

    import torch
    import torch.nn.functional as F

    from ..training.trainer import Trainer

    # teacher_T = p^(1/T) renormalised (= softmax(logits / T)); log-space for tiny probabilities
    soft_t = torch.softmax(
        torch.as_tensor(np.log(np.clip(soft, 1e-12, None)) / temperature, dtype=torch.float32), dim=1
    )

    def loss(logits, target, idx, recipe_loss):
        kd = F.kl_div(F.log_softmax(logits / temperature, dim=1), soft_t[idx].to(logits.device), reduction="batchmean")
        return alpha * temperature**2 * kd + (1 - alpha) * recipe_loss(logits, target)

    # the windows are the crops: a target describes exactly the audio the student sees
    config = dataclasses.replace(config, strategy="full", crop_seconds=None, augment=None)
    trainer = Trainer(config, progress=progress)
    return trainer.fit(net, signals, y, speakers, n_classes=soft.shape[1], batch_loss=loss).to_dict()

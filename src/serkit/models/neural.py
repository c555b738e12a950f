"""Neural model families on raw waveforms: SoundNet transfer learning (``soundnet``).

``soundnet`` wraps a waveform backbone — the pretrained 8-layer SoundNet (22 050 Hz), cut after
one of its blocks, or the light SoundNetRes (16 kHz, trained from scratch) — with a pooling
classification head, and trains it with :class:`serkit.training.Trainer` (freeze / progressive /
full fine-tuning, chosen by training-set size with ``strategy: auto``).

Recipe ``model`` section (every key optional except ``family``)::

    model:
      family: soundnet
      backbone: soundnet8      # or soundnet-res
      layer: conv7             # soundnet8 only: cut after this block (conv1 ... conv7)
      slowdown: 1              # soundnet8 only: play the speech this many times slower into it
      pool: meanmax            # or attention
      strategy: auto           # freeze | progressive | full | auto
      pretrained: null         # null: true for soundnet8, false for soundnet-res (no published weights)
      train: {epochs: 30, crop_seconds: 3.0, ...}   # serkit.training.TrainConfig fields

The ``soundnet-res`` family is the same class with ``backbone: soundnet-res``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from .base import Classifier, register_model

__all__ = ["WaveformClassifier", "SoundNetClassifier", "SoundNetResClassifier", "BACKBONES", "read_cached"]

BACKBONES = ("soundnet8", "soundnet-res")
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "training.json"


# -- decoded audio, kept per process ------------------------------------------------------------

_WAVES: OrderedDict[tuple, np.ndarray] = OrderedDict()
_WAVES_BYTES = [0]
#: decoded+resampled audio kept in memory across fits (LOSO folds re-read the same files)
WAVE_CACHE_MB = float(os.environ.get("SERKIT_WAVE_CACHE_MB", "1024"))


def read_cached(path, sampling_rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """:func:`serkit.audio.read` at ``sampling_rate``, memoised in memory (LRU, ``$SERKIT_WAVE_CACHE_MB``).

    The key includes the file's size and modification time, so an edited file is read again.
    """
    from ..audio import read

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, int(sampling_rate), start, end)
    x = _WAVES.get(key)
    if x is not None:
        _WAVES.move_to_end(key)
        return x
    x = read(path, sampling_rate, start=start, end=end)[0]
    x.setflags(write=False)  # shared between fits: nobody may change it in place
    _WAVES[key] = x
    _WAVES_BYTES[0] += x.nbytes
    while _WAVES and _WAVES_BYTES[0] > WAVE_CACHE_MB * 2**20:
        _, old = _WAVES.popitem(last=False)
        _WAVES_BYTES[0] -= old.nbytes
    return x


# -- the classifier ---------------------------------------------------------------------------


class WaveformClassifier(Classifier):
    """What every torch family on raw waveforms shares: reading audio (memoised), training with
    :class:`serkit.training.Trainer`, whole-utterance prediction with optional per-speaker
    normalisation of the pooled vector, and safetensors persistence.

    A subclass sets ``sampling_rate`` and implements ``_train_config()`` (a
    :class:`serkit.training.TrainConfig`), ``_build_net(n_classes, *, pretrained)`` (a
    :class:`serkit.networks.blocks.BlockwiseNet` whose head is a :class:`serkit.networks.heads.NormedHead`)
    and ``_options()`` (its constructor arguments, for ``model.json``).
    """

    #: whether ``fit`` starts from published weights (``_build_net(pretrained=...)``)
    _pretrained = False

    def _train_config(self):
        raise NotImplementedError

    def _build_net(self, n_classes: int, *, pretrained: bool):
        raise NotImplementedError

    def _options(self) -> dict:
        raise NotImplementedError

    def _describe(self) -> str:
        """What the network is, for error messages."""
        return self.family

    def _architecture_options(self) -> dict:
        """The options that shape the backbone's weights (compared by ``model.init``)."""
        return {}

    # -- pretraining (serkit pretrain, model.init) -------------------------------------------------
    @property
    def pretrainable(self) -> bool:  # type: ignore[override]
        """Every waveform family's backbone can be pretrained (:mod:`serkit.training.pretrain`)."""
        return True

    @property
    def data_parallel(self) -> bool:  # type: ignore[override]
        """Every waveform family trains with :class:`serkit.training.Trainer`, which is data-parallel
        inside a process group (``serkit train --nproc N``, :mod:`serkit.training.distributed`)."""
        return True

    def architecture(self) -> dict:
        """``{"network": name, "options": {...}}``: what ``serkit pretrain`` records and ``model.init`` checks."""
        return {"network": self._describe(), "options": self._architecture_options()}

    def pretrain_network(self):
        """A fresh network of this model's architecture (published weights where the family starts
        from them) for :class:`serkit.training.pretrain.Pretrainer`; its classification head is unused."""
        import torch

        torch.manual_seed(self._train_config().seed)
        return self._build_net(2, pretrained=self._pretrained)

    def _initial_net(self, n_classes: int):
        """The network ``fit`` starts from: built, then the pretrained backbone of ``init`` when set."""
        init = getattr(self, "init", None)
        if not init:
            return self._build_net(n_classes, pretrained=self._pretrained)
        from ..training.pretrain import load_backbone

        net = self._build_net(n_classes, pretrained=False)  # the checkpoint replaces published weights
        load_backbone(net, init, self.architecture())
        return net

    # -- learning -----------------------------------------------------------------------------------
    def fit(self, utterances: Sequence, *, progress: bool = True) -> WaveformClassifier:
        """Read the utterances' audio at the network's rate and train (see the class docstring)."""
        return self._fit(utterances, progress=progress)

    def fit_target(
        self, utterances: Sequence, target: Sequence, *, method: str = "deep-coral", progress: bool = True
    ) -> WaveformClassifier:
        """Train with unlabelled ``target`` utterances mixed into every batch (``"deep-coral"`` or ``"mmd"``).

        loss = the recipe's loss + ``train.domain_weight`` (λ, default 1) × the domain loss between
        the source and target pooled embeddings (:mod:`serkit.networks.domain_losses`; how the
        batches are joined: :meth:`serkit.training.Trainer.fit`). The target's labels are never read.
        """
        if method not in ("deep-coral", "mmd"):
            raise ConfigError(f"train-time adaptation of a {self.family} network is deep-coral or mmd, not {method!r}")
        target = list(target)
        signals = [read_cached(u.path, self.sampling_rate, u.start, u.end) for u in target]
        return self._fit(utterances, progress=progress, target_signals=signals, domain_method=method)

    def _fit(self, utterances: Sequence, *, progress: bool, target_signals=None, domain_method=None):
        import torch

        from ..training.trainer import Trainer

        utterances = list(utterances)
        if not utterances:
            raise ConfigError("cannot fit on zero utterances; check the corpus and the label set")
        labels = sorted({str(u.label) for u in utterances})
        if len(labels) < 2:
            raise ConfigError(f"training needs at least two emotions, found only {labels}; check the label mapping")
        index = {lab: i for i, lab in enumerate(labels)}
        signals = [read_cached(u.path, self.sampling_rate, u.start, u.end) for u in utterances]
        targets = np.array([index[str(u.label)] for u in utterances])
        speakers = [str(u.speaker) for u in utterances]
        config = self._train_config()
        torch.manual_seed(config.seed)  # the head's initial weights are part of the run
        net = self._initial_net(len(labels))
        result = Trainer(config, progress=progress).fit(
            net,
            signals,
            targets,
            speakers,
            n_classes=len(labels),
            target_signals=target_signals,
            domain_method=domain_method,
        )
        self.net_ = net.eval()
        self.labels_ = labels
        self.strategy_ = result.strategy
        self.training_ = result.to_dict()
        return self

    # -- declared capabilities ------------------------------------------------------------------
    @property
    def normalisation(self) -> str:  # type: ignore[override]
        """``"speaker"`` with ``train.normalisation: speaker`` (the head standardises the pooled vector
        per speaker, or with the training set's statistics without adaptation), else ``"none"``."""
        return "speaker" if self._train_config().normalisation == "speaker" else "none"

    @property
    def exportable(self) -> bool:  # type: ignore[override]
        """The whole path from a padded waveform batch to probabilities is one network (ONNX export)."""
        return True

    @property
    def domain_methods(self) -> tuple[str, ...]:  # type: ignore[override]
        """``adabn`` (after training, :meth:`adapt_batchnorm`) and ``deep-coral`` / ``mmd`` (while
        training, :meth:`fit_target`): every waveform family has batch norm (at least the head's)."""
        return ("adabn", "deep-coral", "mmd")

    def _source_batchnorms(self) -> list:
        """The backbone's batch-norm layers whose statistics were estimated on the training data.

        Those of blocks that were unfrozen in some epoch, when ``train.train_bn`` was on. Frozen
        blocks keep the statistics they came with (SoundNet8's from its Flickr pre-training; an
        untrained block's identity), which the layers above them were trained with: re-estimating
        those on the target would move the features away from what the head learned on.
        """
        from ..training.adabn import batchnorm_layers

        if not self._train_config().train_bn:
            return []
        history = (getattr(self, "training_", None) or {}).get("history") or []
        frozen = min((int(h.get("frozen_blocks", 0)) for h in history), default=None)
        if frozen is None:  # no history (an older artifact): trust the strategy
            frozen = 0 if self.strategy_ == "full" else self.net_.n_blocks
        return [m for block in self.net_.blocks[frozen:] for m in batchnorm_layers(block)]

    def adapt_batchnorm(self, target: Sequence, *, progress: bool = False) -> WaveformClassifier:
        """AdaBN: re-estimate batch-norm statistics on unlabelled ``target`` utterances; returns ``self``.

        1. The backbone's batch norms that were estimated on the training data
           (:meth:`_source_batchnorms`) get the target's statistics
           (:func:`serkit.training.adabn.adapt_batchnorm`: cumulative average, eval mode elsewhere).
        2. The head: with ``train.normalisation: speaker`` the fallback statistics a single clip is
           standardised with (``global_mean`` / ``global_std``, the training set's) become the
           target clips' pooled mean and std — the head's batch norm then sees target clips as it
           saw speaker-standardised training clips; otherwise the head's batch norm gets the
           target clips' pooled (whole-utterance) mean and unbiased variance.

        Speaker-adapted predictions change only through step 1.
        """
        import torch

        from ..networks.blocks import predict_pooled
        from ..runtime import default_threads
        from ..speakers import global_stats
        from ..training.adabn import adapt_batchnorm

        self._check_fitted()
        from ..audio import pad_to

        signals = [
            pad_to(read_cached(u.path, self.sampling_rate, u.start, u.end), self.net_.min_samples) for u in target
        ]
        previous = torch.get_num_threads()
        torch.set_num_threads(default_threads())
        try:
            layers = self._source_batchnorms()
            crop = self._train_config().crop_seconds
            adapt_batchnorm(
                self.net_, signals, layers, max_samples=int(crop * self.sampling_rate * 2) if crop else None
            )
            pooled = predict_pooled(self.net_, signals, batch_seconds=self._train_config().eval_batch_seconds)
            head = self.net_.head
            with torch.no_grad():
                if getattr(head, "speaker_norm", False):
                    self.net_.set_global_norm(*global_stats(pooled))
                    where = "speaker-normalisation fallback statistics"
                else:
                    head.norm.running_mean.copy_(pooled.mean(0))
                    head.norm.running_var.copy_(pooled.var(0, unbiased=True))
                    where = "head batch norm"
        finally:
            torch.set_num_threads(previous)
        self.net_.eval()
        self.adabn_ = {"backbone_batchnorms": len(layers), "head": where, "n_clips": len(signals)}
        return self

    # -- predicting ---------------------------------------------------------------------------------
    def _predict_signals(self, signals: list[np.ndarray], speakers: list[str] | None) -> np.ndarray:
        """Whole float32 signals at ``sampling_rate``.

        With ``train.normalisation: speaker`` and ``speakers`` (adaptation) the pooled vectors are
        standardised per speaker (the statistics come from that speaker's signals in this call,
        which need no labels; a speaker with fewer than ``train.min_speaker_utterances`` signals gets
        the training set's statistics); ``speakers=None``: the training set's statistics. Signals
        shorter than the backbone's receptive field are zero-padded.
        """
        import torch

        from ..networks.blocks import predict_logits, predict_pooled
        from ..runtime import default_threads
        from ..speakers import speaker_stats

        signals = self._network_input(signals)
        if not signals:
            return np.zeros((0, len(self.labels_)), dtype=np.float32)
        previous = torch.get_num_threads()
        torch.set_num_threads(default_threads())
        try:
            if self.normalisation == "speaker":
                config = self._train_config()
                pooled = predict_pooled(self.net_, signals, batch_seconds=config.eval_batch_seconds)
                head = self.net_.head
                mu, sd = speaker_stats(
                    pooled, speakers, head.global_mean, head.global_std, config.min_speaker_utterances
                )
                with torch.no_grad():
                    logits = self.net_.from_pooled((pooled - mu) / sd).float().numpy()
            else:
                logits = predict_logits(self.net_, signals)
        finally:
            torch.set_num_threads(previous)
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype(np.float32)

    def _network_input(self, signals) -> list[np.ndarray]:
        """float32 mono signals, each padded to the network's shortest input; a bad one is a ModelError."""
        from ..audio import pad_to

        signals = [np.asarray(s, dtype=np.float32) for s in signals]
        for i, s in enumerate(signals):
            if s.ndim != 1 or s.size == 0:
                raise ModelError(
                    f"signal {i} has shape {s.shape}; pass non-empty mono float32 arrays at {self.sampling_rate} Hz"
                )
        return [pad_to(s, self.net_.min_samples) for s in signals]

    def _predict_utterances(self, utterances: list, speakers: list[str] | None, *, progress: bool) -> np.ndarray:
        """Audio read once per process and kept (:func:`read_cached`)."""
        signals = [read_cached(u.path, self.sampling_rate, u.start, u.end) for u in utterances]
        return self._predict_signals(signals, speakers)

    # -- embedding (few-shot prototypes) -------------------------------------------------------------
    @property
    def has_embedding(self) -> bool:  # type: ignore[override]
        """The head's input: the pooled vector, standardised, before the output layer (:meth:`embed_signals`)."""
        return True

    def embed_signals(self, signals) -> np.ndarray:
        """[shape=(n, d)] float64: each signal's pooled vector, standardised with the training statistics
        when the model normalises per speaker (what a single clip gets), then the head's batch norm —
        the vector the output layer sees (dropout is off in eval mode)."""
        import torch

        from ..networks.blocks import predict_pooled
        from ..runtime import default_threads

        self._check_fitted()
        signals = self._network_input(signals)
        head = self.net_.head
        if not signals:
            return np.zeros((0, int(head.norm.num_features)))
        previous = torch.get_num_threads()
        torch.set_num_threads(default_threads())
        try:
            pooled = predict_pooled(self.net_, signals, batch_seconds=self._train_config().eval_batch_seconds)
            with torch.no_grad():
                if self.normalisation == "speaker":
                    pooled = (pooled - head.global_mean) / head.global_std
                x = head.norm(pooled)
        finally:
            torch.set_num_threads(previous)
        return x.double().numpy()

    def embed_utterances(self, utterances, *, progress: bool = True) -> np.ndarray:
        """:meth:`embed_signals` of the utterances' audio (read once per process, :func:`read_cached`)."""
        return self.embed_signals([read_cached(u.path, self.sampling_rate, u.start, u.end) for u in utterances])

    # -- persistence --------------------------------------------------------------------------------
    def config(self) -> dict:
        cfg = self._options()
        if hasattr(self, "strategy_"):
            cfg["fitted"] = {
                "strategy": self.strategy_,
                "epochs_run": self.training_.get("epochs_run"),
                "best_epoch": self.training_.get("best_epoch"),
                "best_val_ua": self.training_.get("best_val_ua"),
                "val_speakers": self.training_.get("val_speakers"),
            }
        return cfg

    def save_weights(self, directory: Path) -> list[str]:
        """``model.safetensors`` (the network's state dict) and ``training.json`` (the training history)."""
        self._check_fitted()
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"family": self.family, "network": self._describe()})
        (directory / HISTORY_FILE).write_text(json.dumps(self.training_, indent=1))
        return [WEIGHTS_FILE, HISTORY_FILE]

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> WaveformClassifier:
        """Rebuild from ``save_weights`` output; never downloads (the weights hold the whole network)."""

        options = {k: v for k, v in config.items() if k != "fitted"}
        model = cls(**options)
        from ..artifact import model_file

        path = model_file(directory, WEIGHTS_FILE)
        net = model._build_net(len(labels), pretrained=False)
        load_state(net, path, f"a {model._describe()} network for {len(labels)} labels")
        model._restore_fitted(net, directory, config, labels)
        return model

    def _restore_fitted(self, net, directory, config: dict, labels: list[str]) -> None:
        """Set the fitted attributes of a loaded model (network, labels, strategy, training history)."""
        self.net_ = net.eval()
        self.labels_ = list(labels)
        fitted = config.get("fitted") or {}
        self.strategy_ = fitted.get("strategy")
        from ..artifact import model_file

        history = model_file(directory, HISTORY_FILE, required=False)
        self.training_ = json.loads(history.read_text()) if history.is_file() else dict(fitted)


def load_state(module, path: Path, what: str) -> None:
    """Load a safetensors state dict into ``module`` (strict), or raise a :class:`ModelError` saying what to do."""
    from safetensors.torch import load_file

    try:
        module.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:  # safetensors header errors, missing/unexpected keys, shape mismatches
        raise ModelError(
            f"cannot load '{path}' into {what} ({exc}); the file does not match model.json: re-train or re-copy the model"
        ) from None


@register_model("soundnet")
class SoundNetClassifier(WaveformClassifier):
    """SoundNet transfer learning on raw waveforms (or the light SoundNetRes trained from scratch).

    Parameters
    ----------
    backbone
        ``"soundnet8"`` (pretrained, 22 050 Hz) or ``"soundnet-res"`` (16 kHz, random init).
    layer
        soundnet8 only: the top block kept, ``"conv1"`` … ``"conv7"``; the head pools its frames
        (conv7: 1024 channels, one frame per 1.5 s; conv5: 256 channels, one frame per 0.37 s,
        at slowdown 1).
    slowdown
        soundnet8 only: audio is read at ``22050 * slowdown`` Hz and fed to the network as
        22 050 Hz, i.e. played that many times slower (see :mod:`serkit.features.soundnet`: 3
        transfers far better to speech than 1).
    pool
        ``"meanmax"`` (masked mean ‖ max over frames) or ``"attention"`` (attentive statistics).
    strategy
        ``"auto"``, ``"freeze"``, ``"progressive"`` or ``"full"`` (see :mod:`serkit.training.trainer`).
        ``auto`` applies the article's size rule to a pretrained backbone and always means
        ``full`` for a randomly initialised one (freezing random features is pointless).
    pretrained
        Load the published SoundNet weights (``None``: True for soundnet8; soundnet-res has none).
    train
        :class:`serkit.training.TrainConfig` fields (``epochs``, ``lr``, ``crop_seconds``, …).
        For a randomly initialised backbone ``lr`` defaults to ``head_lr`` (1e-3) instead of the
        fine-tuning rate 1e-4.
    init
        A ``serkit pretrain`` checkpoint folder: training starts from its backbone (instead of
        random or published weights; the head is new). Its network must be this model's
        (``backbone`` and its options), else a :class:`serkit.errors.ModelError` names both.

    Attributes
    ----------
    labels_ : list of str
        Class names, sorted; probability columns follow this order.
    strategy_ : str
        The strategy training used (what ``auto`` chose).
    training_ : dict
        :class:`serkit.training.TrainResult` as a dict: epochs run, best epoch, validation
        speakers, per-epoch history (loss, validation UA, seconds).
    net_ : torch.nn.Module
        The trained network (a :class:`serkit.networks.blocks.BlockwiseNet`).
    """

    def __init__(
        self,
        *,
        backbone: str = "soundnet8",
        layer: str = "conv7",
        slowdown: float = 1.0,
        pool: str = "meanmax",
        strategy: str = "auto",
        pretrained: bool | None = None,
        train: dict | None = None,
        channels: dict | None = None,
        init: str | None = None,
    ):
        self.backbone = backbone
        self.layer = layer
        self.slowdown = slowdown
        self.pool = pool
        self.strategy = strategy
        self.pretrained = pretrained
        self.train = dict(train or {})
        self.channels = dict(channels) if channels else None  # pruned widths (serkit.deploy.compress); None: full size
        self.init = str(init) if init else None
        self._validate()

    # -- options ----------------------------------------------------------------------------------
    def _validate(self) -> None:
        from ..training.trainer import STRATEGIES

        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown soundnet backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.pool not in ("meanmax", "meanstd", "attention"):
            raise ConfigError(f"unknown pool {self.pool!r}; choose 'meanmax', 'meanstd' or 'attention'")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        from ..features.base import parse_slowdown

        slowdowns = parse_slowdown(self.slowdown)
        if len(slowdowns) != 1:
            raise ConfigError(f"soundnet: slowdown {self.slowdown!r} must be one number for a trained network, e.g. 3")
        self.slowdown = slowdowns[0]
        if self.backbone == "soundnet-res" and self.slowdown != 1:
            raise ConfigError(
                "slowdown applies to the pretrained soundnet8 only; soundnet-res takes 16 kHz audio as it is"
            )
        if self.backbone == "soundnet-res" and self.pretrained:
            raise ConfigError(
                "soundnet-res has no published pretrained weights; use pretrained: false (it trains from "
                "scratch) or backbone: soundnet8"
            )
        if "strategy" in self.train and self.train["strategy"] != self.strategy:
            raise ConfigError(
                f"strategy given twice (model.strategy={self.strategy!r}, model.train.strategy="
                f"{self.train['strategy']!r}); set only model.strategy"
            )
        self._train_config()  # unknown training keys fail now, not after the audio was read

    @property
    def _pretrained(self) -> bool:  # type: ignore[override]
        return (self.backbone == "soundnet8") if self.pretrained is None else bool(self.pretrained)

    @property
    def sampling_rate(self) -> int:  # type: ignore[override]
        from ..features.soundnet import slowdown_rate

        return slowdown_rate(self.slowdown) if self.backbone == "soundnet8" else 16000

    def _train_config(self):
        from ..training.trainer import TrainConfig

        options = dict(self.train)
        options["strategy"] = self.strategy
        if not self._pretrained:
            # nothing pretrained to protect: train every layer, at the head's rate
            if self.strategy == "auto":
                options["strategy"] = "full"
            options.setdefault("lr", options.get("head_lr", TrainConfig.head_lr))
        return TrainConfig.from_dict(options)

    def _build_net(self, n_classes: int, *, pretrained: bool):
        from ..networks.waveform import SoundNet8Blocks, SoundNetResBlocks

        config = self._train_config()
        dropout, spk = config.dropout, config.normalisation == "speaker"
        # a pruned model (channels recorded in model.json) is built at its own widths
        if self.backbone == "soundnet8":
            return SoundNet8Blocks(
                n_classes,
                layer=self.layer,
                pool=self.pool,
                dropout=dropout,
                pretrained=pretrained,
                speaker_norm=spk,
                sampling_rate=self.sampling_rate,
                channels=self.channels,
            )
        return SoundNetResBlocks(n_classes, pool=self.pool, dropout=dropout, speaker_norm=spk, channels=self.channels)

    @property
    def domain_methods(self) -> tuple[str, ...]:  # type: ignore[override]
        """As every waveform family, except that a frozen backbone with a parameter-free pooling
        (``strategy: freeze``, ``pool: meanmax`` / ``meanstd``) has nothing below the pooled
        embedding to train, so only ``adabn`` applies."""
        if self.strategy == "freeze" and self.pool != "attention":
            return ("adabn",)
        return ("adabn", "deep-coral", "mmd")

    @property
    def prunable(self) -> bool:
        """Both backbones have channel groups for structured pruning (:mod:`serkit.deploy.compress`)."""
        return True

    def _options(self) -> dict:
        return {
            "backbone": self.backbone,
            "layer": self.layer,
            "slowdown": self.slowdown,
            "pool": self.pool,
            "strategy": self.strategy,
            "pretrained": self.pretrained,
            "train": dict(self.train),
            **({"channels": dict(self.channels)} if self.channels else {}),
            **({"init": self.init} if self.init else {}),
        }

    def _describe(self) -> str:
        return self.backbone

    def _architecture_options(self) -> dict:
        options = {"layer": self.layer} if self.backbone == "soundnet8" else {}
        return {**options, **({"channels": dict(self.channels)} if self.channels else {})}


@register_model("soundnet-res")
class SoundNetResClassifier(SoundNetClassifier):
    """``soundnet`` with ``backbone="soundnet-res"``: the light 16 kHz residual network, trained from scratch."""

    def __init__(
        self,
        *,
        backbone: str = "soundnet-res",
        layer: str = "out",
        slowdown: float = 1.0,
        pool: str = "meanmax",
        strategy: str = "auto",
        pretrained: bool | None = None,
        train: dict | None = None,
        channels: dict | None = None,
        init: str | None = None,
    ):
        if backbone != "soundnet-res":
            raise ConfigError(
                f"family soundnet-res always uses backbone soundnet-res, got {backbone!r}; use family soundnet"
            )
        super().__init__(
            backbone=backbone,
            layer=layer,
            slowdown=slowdown,
            pool=pool,
            strategy=strategy,
            pretrained=pretrained,
            train=train,
            channels=channels,
            init=init,
        )

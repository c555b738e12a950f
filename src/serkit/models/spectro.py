"""Neural families on log-mel spectrograms, trained from scratch: ``cnn-lstm`` and ``transformer``.

Both networks take 16 kHz waveforms and compute a 64-band log-mel inside (a fixed front end,
:mod:`serkit.networks.logmel`), so they share everything else with the SoundNet families
(:class:`serkit.models.neural.WaveformClassifier`): memoised audio, the trainer's random crops and
waveform augmentation (plus SpecAugment on the log-mel), focal + label-smoothed loss, cosine
restarts, early stopping on held-out *training* speakers, per-speaker normalisation of the
pooled vector, safetensors artifacts and ONNX export of the whole audio → probabilities graph.

Recipe ``model`` sections (every key optional except ``family``)::

    model:
      family: cnn-lstm
      channels: [16, 32, 64]     # 3×3 conv → BN → ReLU → 2×2 max-pool blocks
      lstm_hidden: 128           # per direction
      lstm_layers: 1
      bidirectional: true
      pool: attention            # attentive statistics pooling (or meanstd, meanmax)
      spec_augment: true         # or {freq_masks: 2, freq_width: 8, time_masks: 2, time_width: 20}
      train: {epochs: 30, normalisation: speaker, augment: true, ...}   # serkit.training.TrainConfig

    model:
      family: transformer
      d_model: 128
      heads: 4
      layers: 3
      ff_dim: 256
      stem_channels: 32
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import register_model
from .neural import WaveformClassifier

__all__ = ["CNNLSTMClassifier", "TransformerClassifier"]

POOLS = ("attention", "meanstd", "meanmax")


class _SpectroClassifier(WaveformClassifier):
    """Shared options of the log-mel families (pooling, SpecAugment, dropout, strategy, training)."""

    sampling_rate = 16000

    def _common(self, dropout, pool, spec_augment, strategy, train, init=None) -> None:
        """Store the options both families share, then validate everything."""
        self.init = str(init) if init else None
        self.dropout = dropout
        self.pool = pool
        self.spec_augment = spec_augment
        self.strategy = strategy
        self.train = dict(train or {})
        self._validate()

    def _encoder(self):
        """The torch encoder (waveform → frame features) for these options."""
        raise NotImplementedError

    def _network_options(self) -> dict:
        raise NotImplementedError

    def _validate(self) -> None:
        if self.pool not in POOLS:
            raise ConfigError(f"unknown pool {self.pool!r}; choose one of {', '.join(POOLS)}")
        if self.strategy not in ("auto", "full"):
            raise ConfigError(
                f"{self.family} starts from random weights, so strategy {self.strategy!r} would freeze untrained "
                "layers; use strategy: full (or auto, which means full here)"
            )
        if "strategy" in self.train and self.train["strategy"] != self.strategy:
            raise ConfigError(
                f"strategy given twice (model.strategy={self.strategy!r}, model.train.strategy="
                f"{self.train['strategy']!r}); set only model.strategy"
            )
        if not 0 <= float(self.dropout) < 1:
            raise ConfigError(f"{self.family} dropout must be in [0, 1), got {self.dropout}")
        self._train_config()  # unknown training keys fail now, not after the audio was read
        self._encoder()  # so do impossible network shapes

    def _train_config(self):
        from ..training.trainer import TrainConfig

        options = dict(self.train)
        options["strategy"] = "full"
        # nothing pretrained: every layer learns at the head's rate, and the encoder's batch norms
        # must learn their statistics (frozen ones would stay at their initial 0/1)
        options.setdefault("lr", options.get("head_lr", TrainConfig.head_lr))
        options.setdefault("train_bn", True)
        return TrainConfig.from_dict(options)

    def _build_net(self, n_classes: int, *, pretrained: bool):
        from ..networks.waveform import EncoderBlocks

        config = self._train_config()
        return EncoderBlocks(
            self._encoder(),
            n_classes,
            name=self.family,
            sampling_rate=self.sampling_rate,
            pool=self.pool,
            dropout=config.dropout,
            speaker_norm=config.normalisation == "speaker",
        )

    def _options(self) -> dict:
        return {
            **self._network_options(),
            "dropout": self.dropout,
            "pool": self.pool,
            "spec_augment": self.spec_augment,
            "strategy": self.strategy,
            "train": dict(self.train),
            **({"init": self.init} if self.init else {}),
        }

    def _architecture_options(self) -> dict:
        return self._network_options()


@register_model("cnn-lstm")
class CNNLSTMClassifier(_SpectroClassifier):
    """CNN + (Bi)LSTM on 64-band log-mel spectrograms with an attention-pooling head, from scratch.

    Parameters
    ----------
    n_mels
        Mel bands of the log-mel front end (512-point frames, 10 ms hop, 16 kHz).
    channels
        Output channels of the 2-D convolution blocks (each halves bands and frames: three blocks
        give 12.5 frames per second to the LSTM).
    lstm_hidden, lstm_layers, bidirectional
        The recurrent part (hidden units per direction).
    dropout
        Inside the encoder (CNN output, between LSTM layers); the head's dropout is ``train.dropout``.
    pool
        ``"attention"`` (attentive statistics), ``"meanstd"`` or ``"meanmax"``.
    spec_augment
        SpecAugment on the log-mel while training: ``True`` (2 frequency masks ≤ 8 bands, 2 time
        masks ≤ 20 frames), ``False``, or a dict of :class:`serkit.networks.logmel.SpecAugment` options.
    strategy
        ``"full"`` or ``"auto"`` (the same here: nothing is pretrained).
    train
        :class:`serkit.training.TrainConfig` fields; ``lr`` defaults to ``head_lr`` (1e-3) and
        ``train_bn`` to true.
    init
        A ``serkit pretrain`` checkpoint folder to start the encoder from (see
        :class:`serkit.models.neural.SoundNetClassifier`).

    Attributes
    ----------
    labels_, strategy_, training_, net_
        As :class:`serkit.models.neural.SoundNetClassifier`.
    """

    def __init__(
        self,
        *,
        n_mels: int = 64,
        channels=(16, 32, 64),
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.1,
        pool: str = "attention",
        spec_augment: dict | bool | None = True,
        strategy: str = "full",
        train: dict | None = None,
        init: str | None = None,
    ):
        self.n_mels = n_mels
        self.channels = channels
        self.lstm_hidden = lstm_hidden
        self.lstm_layers = lstm_layers
        self.bidirectional = bidirectional
        self._common(dropout, pool, spec_augment, strategy, train, init)

    def _network_options(self) -> dict:
        return {
            "n_mels": self.n_mels,
            "channels": list(self.channels),
            "lstm_hidden": self.lstm_hidden,
            "lstm_layers": self.lstm_layers,
            "bidirectional": self.bidirectional,
        }

    def _encoder(self):
        from ..networks.cnn_lstm import CNNLSTM

        if isinstance(self.channels, (str, bytes)) or not hasattr(self.channels, "__iter__"):
            raise ConfigError(f"channels must be a list of widths such as [16, 32, 64], got {self.channels!r}")
        return CNNLSTM(
            self.sampling_rate,
            n_mels=int(self.n_mels),
            channels=self.channels,
            lstm_hidden=int(self.lstm_hidden),
            lstm_layers=int(self.lstm_layers),
            bidirectional=bool(self.bidirectional),
            dropout=float(self.dropout),
            spec_augment=self.spec_augment,
        )


@register_model("transformer")
class TransformerClassifier(_SpectroClassifier):
    """A small transformer encoder over log-mel patches (one token per 40 ms) with an attention-pooling head.

    Parameters
    ----------
    n_mels
        Mel bands of the log-mel front end.
    stem_channels
        Channels of the two stride-2 3×3 patch convolutions.
    d_model, heads, layers, ff_dim
        Encoder width, attention heads, depth, feed-forward width.
    dropout, pool, spec_augment, strategy, train
        As :class:`CNNLSTMClassifier`.
    """

    def __init__(
        self,
        *,
        n_mels: int = 64,
        stem_channels: int = 32,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 3,
        ff_dim: int = 256,
        dropout: float = 0.1,
        pool: str = "attention",
        spec_augment: dict | bool | None = True,
        strategy: str = "full",
        train: dict | None = None,
        init: str | None = None,
    ):
        self.n_mels = n_mels
        self.stem_channels = stem_channels
        self.d_model = d_model
        self.heads = heads
        self.layers = layers
        self.ff_dim = ff_dim
        self._common(dropout, pool, spec_augment, strategy, train, init)

    def _network_options(self) -> dict:
        return {
            "n_mels": self.n_mels,
            "stem_channels": self.stem_channels,
            "d_model": self.d_model,
            "heads": self.heads,
            "layers": self.layers,
            "ff_dim": self.ff_dim,
        }

    def _encoder(self):
        from ..networks.transformer import SpectroTransformer

        return SpectroTransformer(
            self.sampling_rate,
            n_mels=int(self.n_mels),
            stem_channels=int(self.stem_channels),
            d_model=int(self.d_model),
            heads=int(self.heads),
            layers=int(self.layers),
            ff_dim=int(self.ff_dim),
            dropout=float(self.dropout),
            spec_augment=self.spec_augment,
        )

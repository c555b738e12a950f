"""Self-supervised speech backbones (wav2vec 2.0, HuBERT, WavLM) through ``transformers``: family ``ssl``.

The backbone's hidden states (the transformer's input and every layer's output) are mixed by a
learned softmax-weighted sum, pooled over frames and classified by the same batch-norm head as
the SoundNet family. The backbone is frozen (``finetune_top: 0``) or its top ``k`` transformer
layers are unfrozen progressively, from the top, by :class:`serkit.training.Trainer`.

Recipe ``model`` section (every key optional except ``family``)::

    model:
      family: ssl
      backbone: facebook/wav2vec2-base   # a hub id (fetched into the user's transformers cache) or a local folder
      layers: all                        # hidden states to mix: all, or a list of indices (0 = CNN features, -1 = top)
      pool: meanstd                      # or attention
      finetune_top: 0                    # 0: frozen backbone; k: unfreeze the top k transformer layers
      train: {epochs: 30, normalisation: speaker, ...}   # serkit.training.TrainConfig fields

How the backbone maps onto the blockwise contract (:class:`~serkit.networks.blocks.BlockwiseNet`, the network
classes are :mod:`serkit.networks.ssl`): block 0 is the
feature encoder (CNN, projection, positional convolution), block ``i`` is transformer layer ``i``.
The representation after block ``k`` stacks, along the channel axis, the hidden states the head
will mix that exist so far plus the current one, ``[batch, n_states * hidden, frames]``. So the
trainer's machinery works unchanged: ``finetune_top: 0`` caches the frozen stack once per fit and
trains the head on crops of it; ``finetune_top: k`` is the ``progressive`` strategy with
``max_unfrozen: k`` (the head first, then one more layer per ``stage_epochs``).

Padded batches give what a lone clip gives: input normalisation and the first convolution's
group norm (wav2vec 2.0 / HuBERT base) use only the valid samples, attention ignores padded frames.

A saved model holds its backbone (``backbone/``: ``config.json``, ``model.safetensors``,
``preprocessor_config.json``, as written by ``save_pretrained``) and the head (``model.safetensors``),
so it loads with no network and no hub cache; ``model.json`` records the checkpoint it started from.
See ``docs/ssl.md`` for pointing serkit at a real checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ConfigError, ModelError
from .base import register_model
from .neural import HISTORY_FILE, WEIGHTS_FILE, WaveformClassifier, load_state

__all__ = ["SSLClassifier", "SUPPORTED_MODEL_TYPES", "DEFAULT_BACKBONE", "load_backbone"]

#: ``config.model_type`` values whose models this family knows how to split into blocks
SUPPORTED_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
DEFAULT_BACKBONE = "facebook/wav2vec2-base"
BACKBONE_DIR = "backbone"
SAMPLING_RATE = 16000
POOLS = ("meanstd", "attention")


# -- loading a checkpoint ---------------------------------------------------------------------


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ConfigError(
            "the ssl model family needs the 'transformers' package; install it with pip install 'serkit[ssl]'"
        ) from None
    return transformers


def _offline() -> bool:
    """``$HF_HUB_OFFLINE`` / ``$TRANSFORMERS_OFFLINE``, read now (huggingface_hub reads them once, at import)."""
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _how_to_get(backbone: str) -> str:
    return (
        f"download it where the Hugging Face hub is reachable with `hf download {backbone} --local-dir DIR` "
        f"(older huggingface_hub: `huggingface-cli download {backbone} --local-dir DIR`), copy DIR here and pass "
        "--set model.backbone=DIR; a checkpoint already in your transformers cache also works with HF_HUB_OFFLINE=1"
    )


def load_backbone(backbone: str, *, local_only: bool = False):
    """Load a wav2vec 2.0 / HuBERT / WavLM checkpoint in float32, eval mode.

    Parameters
    ----------
    backbone
        A folder written by ``save_pretrained`` / ``hf download`` (``config.json`` + weights), or a
        hub id such as ``"microsoft/wavlm-base-plus"``, resolved through the user's ``transformers``
        cache (and the hub, unless ``$HF_HUB_OFFLINE`` is set).
    local_only
        Never touch the network (saved models' own backbones).

    Returns
    -------
    model : transformers.PreTrainedModel
        ``Wav2Vec2Model``, ``HubertModel`` or ``WavLMModel``.
    info : dict
        ``model_type``, ``do_normalize`` (zero-mean unit-variance input, from the checkpoint's
        ``preprocessor_config.json``; True, the feature extractor's default, when it has none),
        ``sampling_rate`` (Hz).

    Raises
    ------
    ConfigError
        Missing folder, unreachable or unknown checkpoint (the message says how to download it), an
        unsupported architecture, ``transformers`` not installed.
    """
    transformers = _transformers()
    text = str(backbone)
    path = Path(text).expanduser()
    local = path.is_dir()
    if not local and (path.exists() or text.startswith(("/", ".", "~")) or text.count("/") > 1):
        raise ConfigError(
            f"backbone folder '{text}' does not exist (or is not a folder); pass a folder holding config.json and "
            f"model.safetensors (written by save_pretrained or `hf download ID --local-dir DIR`), or a hub id such as "
            f"{DEFAULT_BACKBONE}"
        )
    if local and not (path / "config.json").is_file():
        raise ConfigError(
            f"backbone folder '{path}' has no config.json; it must be a checkpoint folder (written by save_pretrained "
            "or `hf download ID --local-dir DIR`)"
        )
    source = str(path) if local else text
    kw = {"local_files_only": True} if (local or local_only or _offline()) else {}
    try:
        config = transformers.AutoConfig.from_pretrained(source, **kw)
    except (OSError, ValueError) as exc:
        where = "offline (HF_HUB_OFFLINE is set)" if _offline() else "from the local cache or the hub"
        raise ConfigError(
            f"cannot load backbone {text!r} {where}: {str(exc).splitlines()[0]}; {_how_to_get(text)}"
        ) from None
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"backbone {text!r} is a {model_type!r} model; the ssl family supports {', '.join(SUPPORTED_MODEL_TYPES)} "
            "(e.g. facebook/wav2vec2-base, facebook/hubert-base-ls960, microsoft/wavlm-base-plus)"
        )
    try:
        model = transformers.AutoModel.from_pretrained(source, **kw)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the weights of backbone {text!r}: {str(exc).splitlines()[0]}; {_how_to_get(text)}"
        ) from None
    model = model.float().eval()
    info = {"model_type": model_type, "do_normalize": True, "sampling_rate": SAMPLING_RATE}
    try:
        fe = transformers.Wav2Vec2FeatureExtractor.from_pretrained(source, **kw)
        info.update(do_normalize=bool(fe.do_normalize), sampling_rate=int(fe.sampling_rate))
    except (OSError, ValueError):
        pass  # no preprocessor_config.json: the feature extractor's defaults (16 kHz, normalised)
    if info["sampling_rate"] != SAMPLING_RATE:
        raise ConfigError(
            f"backbone {text!r} expects {info['sampling_rate']} Hz audio; the ssl family supports 16000 Hz checkpoints"
        )
    return model, info


def _resolve_layers(layers, n_layers: int) -> list[int]:
    """``"all"`` or a list of hidden-state indices (negative count from the top) → sorted unique indices in 0 … L."""
    top = n_layers
    if layers in (None, "all"):
        return list(range(top + 1))
    if isinstance(layers, (int, str)):
        layers = [layers]
    out = set()
    for x in layers:
        try:
            i = int(x)
        except (TypeError, ValueError):
            raise ConfigError(f"layers must be 'all' or a list of hidden-state indices, got {layers!r}") from None
        if not -(top + 1) <= i <= top:
            raise ConfigError(
                f"layer {i} does not exist: this backbone has hidden states 0 (CNN features) … {top} (top layer); "
                f"negative indices count from the top (-1 = {top})"
            )
        out.add(i % (top + 1))
    if not out:
        raise ConfigError("layers is an empty list; use 'all' or name at least one hidden state")
    return sorted(out)


# -- the classifier ---------------------------------------------------------------------------


@register_model("ssl")
class SSLClassifier(WaveformClassifier):
    """wav2vec 2.0 / HuBERT / WavLM (``transformers``) with a learned layer mix, pooling and a linear head.

    Parameters
    ----------
    backbone
        Hub id (``"facebook/wav2vec2-base"``, ``"facebook/hubert-base-ls960"``,
        ``"microsoft/wavlm-base-plus"``, …) fetched into the user's ``transformers`` cache, or a
        local checkpoint folder. ``$HF_HUB_OFFLINE=1`` never touches the network.
    layers
        Hidden states mixed by the learned softmax weights: ``"all"`` (0 … L) or a list of indices,
        0 being the transformer's input (CNN features) and ``-1`` the top layer.
    pool
        ``"meanstd"`` (masked mean ‖ standard deviation over frames) or ``"attention"`` (attentive
        statistics over the valid frames).
    finetune_top
        0: the backbone stays frozen (its stacked hidden states are computed once per fit and
        cached, ``train.cache_max_mb`` permitting). ``k``: after ``train.stage_epochs`` epochs of
        the head alone, the top transformer layers are unfrozen one per stage, up to ``k``.
    train
        :class:`serkit.training.TrainConfig` fields; ``strategy`` and ``max_unfrozen`` follow from
        ``finetune_top`` and may not be set.

    Attributes
    ----------
    labels_, strategy_, training_, net_
        As :class:`serkit.models.neural.SoundNetClassifier`.
    backbone_info_ : dict
        ``model_type``, ``hidden_size``, ``num_hidden_layers``, ``do_normalize`` of the backbone.
    layer_weights_ : dict
        Learned mixing weight of every mixed hidden state (``{"0": …, "12": …}``; they sum to 1).
    """

    _pretrained = True

    def __init__(
        self,
        *,
        backbone: str = DEFAULT_BACKBONE,
        layers="all",
        pool: str = "meanstd",
        finetune_top: int = 0,
        train: dict | None = None,
    ):
        self.backbone = backbone
        self.layers = layers
        self.pool = pool
        self.finetune_top = finetune_top
        self.train = dict(train or {})
        self._validate()

    sampling_rate = SAMPLING_RATE

    # -- options ----------------------------------------------------------------------------------
    def _validate(self) -> None:
        if not isinstance(self.backbone, str) or not self.backbone.strip():
            raise ConfigError(f"backbone must be a hub id or a folder, got {self.backbone!r}; e.g. {DEFAULT_BACKBONE}")
        if self.pool not in POOLS:
            raise ConfigError(f"unknown pool {self.pool!r}; choose {' or '.join(repr(p) for p in POOLS)}")
        if isinstance(self.finetune_top, bool) or not isinstance(self.finetune_top, int) or self.finetune_top < 0:
            raise ConfigError(f"finetune_top must be an integer >= 0 (0 = frozen backbone), got {self.finetune_top!r}")
        if self.layers != "all":
            _resolve_layers(self.layers, 10**6)  # shape check now; the range is checked against the backbone
        for key in ("strategy", "max_unfrozen"):
            if key in self.train:
                raise ConfigError(
                    f"model.train.{key} is set by model.finetune_top for the ssl family (0: frozen backbone, "
                    f"k: unfreeze the top k layers); remove train.{key}"
                )
        self._train_config()

    def _train_config(self):
        from ..training.trainer import TrainConfig

        options = dict(self.train)
        if self.finetune_top == 0:
            options["strategy"] = "freeze"
        else:
            options.update(strategy="progressive", max_unfrozen=int(self.finetune_top))
        return TrainConfig.from_dict(options)

    def _options(self) -> dict:
        return {
            "backbone": self.backbone,
            "layers": self.layers,
            "pool": self.pool,
            "finetune_top": self.finetune_top,
            "train": dict(self.train),
        }

    def _describe(self) -> str:
        return f"ssl {getattr(self, 'backbone_info_', {}).get('model_type', '')} ({self.backbone})"

    def _build_net(self, n_classes: int, *, pretrained: bool, source: str | None = None, local_only: bool = False):
        model, info = load_backbone(source or self.backbone, local_only=local_only)
        cfg = model.config
        if self.finetune_top > cfg.num_hidden_layers:
            raise ConfigError(
                f"finetune_top={self.finetune_top} but backbone {self.backbone!r} has {cfg.num_hidden_layers} "
                f"transformer layers; use 0 … {cfg.num_hidden_layers}"
            )
        from ..networks.ssl import SSLNet

        config = self._train_config()
        net = SSLNet(
            model,
            info,
            n_classes,
            layers=_resolve_layers(self.layers, int(cfg.num_hidden_layers)),
            pool=self.pool,
            dropout=config.dropout,
            speaker_norm=config.normalisation == "speaker",
        )
        self.backbone_info_ = {
            "model_type": info["model_type"],
            "hidden_size": int(cfg.hidden_size),
            "num_hidden_layers": int(cfg.num_hidden_layers),
            "do_normalize": info["do_normalize"],
        }
        self._feature_info = info
        return net

    @property
    def pretrainable(self) -> bool:  # type: ignore[override]
        """No: the backbone is a published self-supervised model already (wav2vec 2.0 / HuBERT / WavLM)."""
        return False

    @property
    def domain_methods(self) -> tuple[str, ...]:  # type: ignore[override]
        """``adabn`` only (the head's batch norm; the backbones use layer/group norm). Train-time
        Deep CORAL / MMD are not wired into this family's fit."""
        return ("adabn",)

    # -- learning -----------------------------------------------------------------------------------
    def fit(self, utterances, *, progress: bool = True) -> SSLClassifier:
        """Load the backbone, read the utterances' audio at 16 kHz and train (see the class docstring)."""
        super().fit(utterances, progress=progress)
        self.layer_weights_ = self._layer_weights()
        return self

    def _layer_weights(self) -> dict:
        head = self.net_.head
        w = head.layer_weights().detach().cpu().tolist()
        return {str(i): round(float(x), 5) for i, x in zip(head.layer_ids, w)}

    # -- persistence --------------------------------------------------------------------------------
    def config(self) -> dict:
        cfg = super().config()
        if hasattr(self, "net_"):
            cfg.setdefault("fitted", {}).update(
                backbone=dict(self.backbone_info_), layer_weights=self.layer_weights_, backbone_files=BACKBONE_DIR
            )
        return cfg

    def save_weights(self, directory: Path) -> list[str]:
        """``backbone/`` (the possibly fine-tuned backbone, ``save_pretrained`` in safetensors, with its
        preprocessor config), ``model.safetensors`` (the head) and ``training.json``."""
        self._check_fitted()
        from safetensors.torch import save_file

        directory = Path(directory)
        model = self.net_.backbone_model
        model.save_pretrained(str(directory / BACKBONE_DIR), safe_serialization=True)
        _transformers().Wav2Vec2FeatureExtractor(
            feature_size=1,
            sampling_rate=SAMPLING_RATE,
            padding_value=0.0,
            do_normalize=bool(self.backbone_info_["do_normalize"]),
            return_attention_mask=True,
        ).save_pretrained(str(directory / BACKBONE_DIR))
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.head.state_dict().items()}
        save_file(
            state,
            str(directory / WEIGHTS_FILE),
            metadata={"family": self.family, "network": self._describe(), "part": "head"},
        )
        (directory / HISTORY_FILE).write_text(json.dumps(self.training_, indent=1))
        return [WEIGHTS_FILE, HISTORY_FILE, BACKBONE_DIR]

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> SSLClassifier:
        """Rebuild from ``save_weights`` output: the backbone from ``backbone/``, never from the network."""

        directory = Path(directory)
        options = {k: v for k, v in config.items() if k != "fitted"}
        model = cls(**options)
        from ..artifact import model_file

        head_path, backbone_dir = model_file(directory, WEIGHTS_FILE), model_file(directory, BACKBONE_DIR, kind="dir")
        model_file(directory, f"{BACKBONE_DIR}/config.json")
        for p in backbone_dir.rglob("*"):  # transformers reads what it finds here: all of it stays inside
            model_file(directory, p.relative_to(backbone_dir.parent).as_posix(), kind="dir" if p.is_dir() else "file")
        try:
            net = model._build_net(len(labels), pretrained=False, source=str(backbone_dir), local_only=True)
        except ConfigError as exc:
            raise ModelError(
                f"cannot load the backbone saved in '{backbone_dir}' ({exc}); re-train or re-copy the model"
            ) from None
        load_state(net.head, head_path, f"the head for {len(labels)} labels")
        model._restore_fitted(net, directory, config, labels)
        model.layer_weights_ = model._layer_weights()
        return model

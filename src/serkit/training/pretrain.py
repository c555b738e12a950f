"""Pretraining a waveform backbone without labels: SimCLR (NT-Xent) and teacher-student distillation.

Both methods train the blocks of a :class:`serkit.networks.blocks.BlockwiseNet` (the network a
serkit family builds, so that its weights fit that family's model later, ``--set model.init=P``)
through a throw-away :class:`serkit.networks.heads.ProjectionHead` on the pooled vector:

* ``simclr`` — two views of every clip, each a random crop (``crop_seconds``) of its own
  augmentation (:class:`serkit.training.augment.Augmenter`: noise at 5–15 dB SNR, speed ±10 %,
  gain ±6 dB), pulled together and pushed away from the batch's other clips by NT-Xent
  (:func:`serkit.training.losses.nt_xent`, temperature ``temperature``). Log-mel networks
  (``cnn-lstm``) add their own SpecAugment time and frequency masks, which run in training mode.
* ``teacher`` — one augmented crop of every clip; the student's projection matches a fixed
  per-clip teacher vector: a distribution (probabilities; KL divergence at temperature
  ``distill_temperature``, :func:`~serkit.training.losses.distillation_kl`) or an embedding
  (``1 - cos``, :func:`~serkit.training.losses.cosine_distance`). Where the vectors come from (a
  serkit model, GE2E, an ``.npz`` of an image network's posteriors) is the caller's business
  (:func:`serkit.api.pretrain`), so cross-modal teachers plug in without serkit running them.

AdamW at a constant learning rate, gradient clipping. A constant rate keeps a run resumable to
*more* epochs: ``epochs=1`` and then ``resume`` with ``epochs=2`` equals one ``epochs=2`` run (same
seed, same machine), which a schedule over the total length would not.

A **checkpoint** is a folder written atomically after every epoch
(:func:`serkit.artifact.replace_directory`): ``backbone.safetensors`` (the blocks' state dict, what
``model.init`` loads), ``state.safetensors`` (the whole network, the projection head, the
optimiser's moments and torch's random state, for ``resume``) and ``pretrain.json`` (architecture,
method, options, epochs done, loss history, the numpy generator's state, what data it saw).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio import pad_to
from ..errors import ConfigError, ModelError
from ..networks.blocks import BlockwiseNet, as_tensor, pad_batch
from ..networks.heads import ProjectionHead
from ..runtime import default_threads
from .losses import cosine_distance, distillation_kl, nt_xent

__all__ = [
    "METHODS",
    "MATCHES",
    "PretrainConfig",
    "Pretrainer",
    "read_checkpoint",
    "load_backbone",
    "BACKBONE_FILE",
    "STATE_FILE",
    "META_FILE",
]

METHODS = ("simclr", "teacher")
MATCHES = ("distribution", "embedding")
BACKBONE_FILE = "backbone.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "pretrain.json"
FORMAT_VERSION = 1

#: the SimCLR views' augmentation: the issue's ranges, each applied with probability 0.8 (SimCLR's
#: colour-jitter probability); time stretch is off (WSOLA costs ~1 ms/s and speed already moves tempo)
DEFAULT_AUGMENT = {"noise_snr": [5.0, 15.0], "speed": 0.1, "stretch": 0, "gain_db": 6.0, "p": 0.8}


@dataclass
class PretrainConfig:
    """The ``pretrain:`` section of a recipe.

    Attributes
    ----------
    epochs
        Passes over the unlabelled clips.
    batch_size
        Clips per batch (NT-Xent sees ``2 × batch_size`` views, ``2 × batch_size − 2`` negatives each).
    temperature
        NT-Xent τ.
    distill_temperature
        T of the KL distillation loss (``match: distribution``).
    match
        ``"auto"`` (``distribution`` when every teacher row is non-negative and sums to 1, else
        ``embedding``), ``"distribution"`` or ``"embedding"``.
    lr, weight_decay
        AdamW, constant rate.
    grad_clip
        Largest gradient norm; 0 turns clipping off.
    crop_seconds
        Length of each view (seconds); ``null``: whole clips.
    projection_dim, projection_hidden
        NT-Xent projection size and the head's hidden units (0: one linear layer). For ``teacher``
        the output size is the teacher's vector length.
    augment
        ``true`` for :data:`DEFAULT_AUGMENT`, ``false`` for none, or a dict of
        :class:`~serkit.training.augment.Augmenter` options.
    seed
        Seeds torch (the head's initial weights) and the crops and augmentations.
    """

    epochs: int = 10
    batch_size: int = 32
    temperature: float = 0.1
    distill_temperature: float = 2.0
    match: str = "auto"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    crop_seconds: float | None = 1.5
    projection_dim: int = 128
    projection_hidden: int = 256
    augment: dict | bool | None = True
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "projection_dim"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"pretrain.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.batch_size) < 2:
            raise ConfigError(
                f"pretrain.batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}"
            )
        for name in ("temperature", "distill_temperature", "lr"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"pretrain.{name} must be > 0, got {getattr(self, name)}")
        if self.match not in ("auto", *MATCHES):
            raise ConfigError(f"pretrain.match must be auto, distribution or embedding, got {self.match!r}")
        if self.crop_seconds is not None and not float(self.crop_seconds) > 0:
            raise ConfigError(f"pretrain.crop_seconds must be > 0 or null (whole clips), got {self.crop_seconds}")

    @classmethod
    def from_dict(cls, options: dict | None) -> PretrainConfig:
        """From a recipe's ``pretrain`` mapping; an unknown key lists the valid ones."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown pretrain option(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**options)

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_match(targets: np.ndarray, match: str = "auto") -> str:
    """``distribution`` or ``embedding`` for teacher rows ``targets`` [shape=(n, k)] (see ``PretrainConfig.match``)."""
    if match != "auto":
        if match == "distribution" and (np.any(targets < 0) or not np.allclose(targets.sum(1), 1.0, atol=1e-3)):
            raise ConfigError(
                "pretrain.match distribution needs teacher rows of probabilities (non-negative, summing to 1); "
                "these are not: use match: embedding"
            )
        return match
    is_dist = bool(np.all(targets >= 0) and np.allclose(targets.sum(1), 1.0, atol=1e-3))
    return "distribution" if is_dist else "embedding"


# -- checkpoints --------------------------------------------------------------------------------


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """AdamW's state as flat tensors ``opt.<param>.<key>`` plus the JSON-able rest."""
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _optimizer_state(tensors: dict, saved: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in saved["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": saved["param_groups"]}


def read_checkpoint(path) -> dict:
    """The parsed ``pretrain.json`` of a checkpoint folder, or a :class:`ModelError` saying what it is not."""
    from ..artifact import model_file

    p = Path(path).expanduser()
    if not p.is_dir():
        raise ModelError(f"pretraining checkpoint '{p}' is not a folder; pass the --out folder of serkit pretrain")
    meta_path = model_file(p, META_FILE, required=False)
    if not meta_path.is_file():
        raise ModelError(
            f"'{p}' has no {META_FILE}, so it is not a serkit pretraining checkpoint; pass the --out folder of serkit pretrain"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"'{meta_path}' is not valid JSON ({exc}); pretrain again") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"checkpoint '{p}' has format {meta.get('format_version')}; this serkit reads {FORMAT_VERSION}"
        )
    return meta


def describe_architecture(arch: dict) -> str:
    """``cnn-lstm (n_mels 64, channels [16, 32, 64], ...)``: a network and its options, for messages."""
    options = ", ".join(f"{k} {v}" for k, v in sorted((arch.get("options") or {}).items()) if v is not None)
    return f"{arch.get('network')}" + (f" ({options})" if options else "")


def load_backbone(net: BlockwiseNet, path, architecture: dict) -> dict:
    """Load a checkpoint's pretrained blocks into ``net`` (``model.init``); returns the checkpoint's ``pretrain.json``.

    ``architecture`` is the model's own (``{"network": ..., "options": {...}}``). The networks must
    be the same kind, and every tensor of ``net``'s blocks must be in the checkpoint with the same
    shape (a SoundNet8 cut lower than the pretrained one loads the blocks it has); otherwise a
    :class:`ModelError` names both architectures. The head stays as built (random).
    """
    from safetensors.torch import load_file

    from ..artifact import model_file

    meta = read_checkpoint(path)
    theirs = meta.get("architecture") or {}
    mismatch = (
        f"pretrained checkpoint '{path}' holds a {describe_architecture(theirs)} backbone, but this model's network "
        f"is {describe_architecture(architecture)}"
    )
    if theirs.get("network") != architecture.get("network"):
        raise ModelError(
            f"{mismatch}; pretrain with --backbone {architecture.get('network')} (or the same recipe), or drop model.init"
        )
    state = load_file(str(model_file(path, BACKBONE_FILE)))
    own = {k: v for k, v in net.state_dict().items() if k.startswith("blocks.")}
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        first = (missing or wrong)[0]
        detail = (
            f"missing {first}" if missing else f"{first} is {tuple(state[first].shape)}, not {tuple(own[first].shape)}"
        )
        raise ModelError(f"{mismatch}; their weights differ ({detail}): pretrain with this model's recipe")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k])
    return meta


# -- the pretrainer -----------------------------------------------------------------------------


class Pretrainer:
    """Pretrain ``net``'s blocks on unlabelled signals (see the module docstring).

    Parameters
    ----------
    config
        :class:`PretrainConfig` or a dict of its fields.
    progress
        A progress bar per epoch with the running loss (stderr).
    device
        ``None``: CUDA when available, else CPU.
    threads
        Torch CPU threads (``None``: :func:`serkit.runtime.default_threads`).
    """

    def __init__(
        self, config: PretrainConfig | dict | None = None, *, progress: bool = False, device=None, threads=None
    ):
        self.config = config if isinstance(config, PretrainConfig) else PretrainConfig.from_dict(config)
        self.progress = progress
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.threads = threads

    def fit(
        self,
        net: BlockwiseNet,
        signals: Sequence[np.ndarray],
        *,
        method: str,
        architecture: dict,
        out,
        teacher: np.ndarray | None = None,
        resume: bool = False,
        info: dict | None = None,
        stop_after: int | None = None,
    ) -> dict:
        """Train ``net`` in place, writing the checkpoint ``out`` after every epoch; returns its ``pretrain.json``.

        Parameters
        ----------
        net
            A network in the blockwise contract (its ``pooled_from`` gives the vector the head sees).
        signals
            Float32 mono waveforms at ``net.sampling_rate``, in a fixed order (a resumed run must get
            the same clips in the same order; ``info["content_hash"]`` is checked).
        method
            ``"simclr"`` or ``"teacher"``.
        architecture
            ``{"network": name, "options": {...}}`` recorded for ``model.init``'s check.
        out
            Checkpoint folder.
        teacher
            [shape=(n, k)] one teacher vector per signal (``method="teacher"``).
        resume
            Continue from ``out``'s last epoch up to ``config.epochs`` (same method, architecture,
            options except ``epochs``, and data).
        info
            JSON-able facts to record (data specs, number of clips, content hash, teacher).
        stop_after
            Stop after this many epochs in total (an interruption, for tests); ``None``: ``config.epochs``.
        """
        if method not in METHODS:
            raise ConfigError(f"unknown pretraining method {method!r}; choose one of {', '.join(METHODS)}")
        c = self.config
        signals = [pad_to(np.asarray(s, dtype=np.float32), net.min_samples) for s in signals]
        if len(signals) < 2:
            raise ConfigError(f"pretraining needs at least 2 clips, got {len(signals)}; give more unlabelled audio")
        targets, match = None, None
        if method == "teacher":
            if teacher is None:
                raise ConfigError("method teacher needs one teacher vector per clip (--teacher MODEL_OR_NPZ)")
            targets = np.asarray(teacher, dtype=np.float32)
            if targets.ndim != 2 or len(targets) != len(signals):
                raise ConfigError(f"teacher targets have shape {targets.shape}; need one row per clip ({len(signals)})")
            if not np.all(np.isfinite(targets)):
                raise ConfigError("teacher targets contain NaN or infinite values; fix the teacher's output")
            match = teacher_match(targets, c.match)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads or default_threads())
        try:
            return self._fit(
                net, signals, method, architecture, Path(out), targets, match, resume, info or {}, stop_after
            )
        finally:
            torch.set_num_threads(previous_threads)

    def _fit(self, net, signals, method, architecture, out, targets, match, resume, info, stop_after) -> dict:
        c = self.config
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        net.to(self.device)
        with torch.no_grad():
            probe = torch.zeros(2, max(net.min_samples, net.sampling_rate // 2), device=self.device)
            lens = torch.full((2,), probe.shape[1], dtype=torch.long, device=self.device)
            net.eval()
            dim = int(net.pooled_from(probe, lens, 0).shape[1])
        out_dim = c.projection_dim if method == "simclr" else int(targets.shape[1])
        head = ProjectionHead(dim, out_dim, c.projection_hidden).to(self.device)
        params = list(net.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        augmenter = self._augmenter(net)
        crop = None if c.crop_seconds is None else max(int(round(c.crop_seconds * net.sampling_rate)), net.min_samples)
        meta = {
            "format_version": FORMAT_VERSION,
            "method": method,
            "architecture": architecture,
            "sampling_rate": int(net.sampling_rate),
            "config": c.to_dict(),
            "match": match,
            "projection": {"in_dim": dim, "out_dim": out_dim, "hidden": c.projection_hidden},
            "data": info,
            "epochs_done": 0,
            "history": [],
        }
        if resume:
            meta = self._restore(out, meta, net, head, opt, rng)
            rng = meta.pop("_rng")
        last = c.epochs if stop_after is None else min(c.epochs, int(stop_after))
        t_batch = torch.as_tensor(targets) if targets is not None else None
        for epoch in range(meta["epochs_done"], last):
            t0 = time.perf_counter()
            net.train()
            head.train()
            order = rng.permutation(len(signals))
            batches = [order[b : b + c.batch_size] for b in range(0, len(order), c.batch_size)]
            if len(batches) > 1 and len(batches[-1]) < 2:  # NT-Xent and batch norm need two clips
                batches[-2:] = [np.concatenate(batches[-2:])]
            total, count = 0.0, 0
            bar = self._bar(len(signals), f"{method} epoch {epoch + 1}/{c.epochs}")
            for idx in batches:
                n_views = 2 if method == "simclr" else 1
                items = [self._view(signals[i], crop, augmenter, rng) for _ in range(n_views) for i in idx]
                h, lens = pad_batch(items, [int(t.shape[-1]) for t in items])
                z = head(net.pooled_from(h.to(self.device), lens.to(self.device), 0))
                if method == "simclr":
                    loss = nt_xent(z[: len(idx)], z[len(idx) :], c.temperature)
                elif match == "distribution":
                    loss = distillation_kl(z, t_batch[idx].to(self.device), c.distill_temperature)
                else:
                    loss = cosine_distance(z, t_batch[idx].to(self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip:
                    nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], c.grad_clip)
                opt.step()
                total += float(loss.item()) * len(idx)
                count += len(idx)
                if bar is not None:
                    bar.update(len(idx))
                    bar.set_postfix(loss=f"{total / count:.4f}")
            if bar is not None:
                bar.close()
            meta["history"].append(
                {
                    "epoch": epoch + 1,
                    "loss": round(total / max(count, 1), 6),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            meta["epochs_done"] = epoch + 1
            self._save(out, meta, net, head, opt, rng)
        net.eval()
        return meta

    def _augmenter(self, net):
        c = self.config
        if not c.augment:
            return None
        from .augment import Augmenter

        options = dict(DEFAULT_AUGMENT) if c.augment is True else dict(c.augment)
        options["sampling_rate"] = net.sampling_rate
        return Augmenter(**options)

    @staticmethod
    def _view(x: np.ndarray, crop: int | None, augmenter, rng: np.random.Generator) -> torch.Tensor:
        """One random view: a crop a little longer than ``crop`` (speed changes the length), augmented, cropped."""
        from .trainer import _random_crop, _random_crop_np

        if augmenter is not None:
            x = _random_crop_np(x, None if crop is None else int(crop * 1.25), rng)
            x = augmenter(x, rng)
        return _random_crop(as_tensor(x), crop, rng)

    def _bar(self, total: int, desc: str):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"serkit pretrain: {desc}", unit="clip", file=sys.stderr, leave=True)

    # -- checkpoint files -------------------------------------------------------------------------
    def _save(self, out: Path, meta: dict, net, head, opt, rng: np.random.Generator) -> None:
        from safetensors.torch import save_file

        from ..artifact import replace_directory
        from ..jsonio import json_default

        def cpu(state: dict, prefix: str) -> dict:
            return {f"{prefix}{k}": v.detach().cpu().contiguous() for k, v in state.items()}

        backbone = {k: v for k, v in cpu(net.state_dict(), "").items() if k.startswith("blocks.")}
        opt_tensors, opt_rest = _optimizer_tensors(opt)
        state = {
            **cpu(net.state_dict(), "net."),
            **cpu(head.state_dict(), "head."),
            **opt_tensors,
            "rng.torch": torch.get_rng_state(),
        }
        record = {**meta, "optimizer": opt_rest, "numpy_rng": rng.bit_generator.state}
        from .._version import __version__

        record["serkit_version"] = __version__

        def write(tmp: Path) -> None:
            save_file(
                backbone, str(tmp / BACKBONE_FILE), metadata={"network": str(meta["architecture"].get("network"))}
            )
            save_file(state, str(tmp / STATE_FILE))
            (tmp / META_FILE).write_text(json.dumps(record, indent=1, default=json_default))

        replace_directory(out, write)

    def _restore(self, out: Path, meta: dict, net, head, opt, rng) -> dict:
        """Load ``out``'s state into ``net``, ``head`` and ``opt`` after checking it is the same run."""
        from safetensors.torch import load_file

        from ..artifact import model_file

        saved = read_checkpoint(out)
        for key in ("method", "architecture", "match", "projection"):
            if saved.get(key) != json.loads(json.dumps(meta[key])):
                raise ConfigError(
                    f"cannot resume '{out}': its {key} is {saved.get(key)!r}, this run's is {meta[key]!r}; "
                    "resume with the same method, backbone and teacher, or pretrain into a new --out"
                )
        mine = {k: v for k, v in meta["config"].items() if k != "epochs"}
        theirs = {k: v for k, v in (saved.get("config") or {}).items() if k != "epochs"}
        if json.loads(json.dumps(mine)) != theirs:
            changed = sorted(k for k in set(mine) | set(theirs) if json.loads(json.dumps(mine.get(k))) != theirs.get(k))
            raise ConfigError(
                f"cannot resume '{out}': pretrain option(s) {', '.join(changed)} differ from the checkpoint's; "
                "only pretrain.epochs may change on resume"
            )
        h_old, h_new = (saved.get("data") or {}).get("content_hash"), (meta.get("data") or {}).get("content_hash")
        if h_old and h_new and h_old != h_new:
            raise ConfigError(
                f"cannot resume '{out}': the data differ from the clips it was pretrained on; pass the same --data"
            )
        tensors = load_file(str(model_file(out, STATE_FILE)))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        opt_state = _optimizer_state(tensors, saved["optimizer"])
        opt.load_state_dict(opt_state)
        torch.set_rng_state(tensors["rng.torch"])
        rng = np.random.default_rng()
        rng.bit_generator.state = saved["numpy_rng"]
        meta = {**meta, "epochs_done": int(saved["epochs_done"]), "history": list(saved.get("history") or [])}
        meta["_rng"] = rng
        if meta["epochs_done"] >= self.config.epochs and self.progress:
            print(
                f"serkit pretrain: '{out}' already has {meta['epochs_done']} epoch(s); raise pretrain.epochs to go on",
                file=sys.stderr,
            )
        return meta

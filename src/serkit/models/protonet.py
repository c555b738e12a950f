"""Prototypical networks (Snell et al. 2017): a small embedding head learnt episodically over a frozen backbone.

The backbone is the feature layer exactly as the ``features`` family uses it — the same
``features:`` list (``ge2e``, ``soundnet``, ``egemaps``/``compare``, ``librosa``, …), the same disk
cache and the same normalisation (``speaker``: every speaker standardised with its own statistics,
:mod:`serkit.speakers`; ``global``; ``none``); :class:`~serkit.models.features.FeatureClassifier`
does the extraction and standardisation (its classifier is never fitted). On the standardised rows
an MLP (:class:`serkit.networks.protonet.ProtoHead`) is trained on *episodes*: every episode has
every class, ``shots`` support and ``queries`` query clips per class, and the support and query
clips of a class come from **different speakers** — from different corpora when the class is in
several training corpora — so a prototype built from one set of voices has to attract the same
emotion spoken by others (the prototypes separate emotions, not voices). The loss is the
cross-entropy of ``softmax(-d²)`` (squared Euclidean distance to the episode's prototypes).

After training the class prototypes are the mean embeddings of all training clips of each class,
kept per prediction mode: speaker-standardised rows for speaker-adapted predictions, the
single-utterance rows (training-set statistics) for single clips, so each mode compares like with
like. A prediction is ``softmax(-d² / τ)`` to them, with ``τ`` per mode fitted on out-of-fold clips
of held-out training speakers: the head's distances on its own training clips are far smaller than
on a new speaker's, and with ``τ = 1`` every class but one got a probability near 1e-30. The
embedding (``embed_utterances``) is the head's output on single-utterance rows — the space
``serkit enrol`` builds new prototypes in.

Recipe ``model`` section (every key optional except ``family``)::

    model:
      family: protonet
      features: [{name: ge2e, layer: "lstm2,lstm3", pool: "mean,std"}, {name: librosa, n_formants: 0}]
      normalisation: speaker   # speaker | global | none
      hidden: 128              # MLP hidden width
      dim: 128                 # embedding width
      dropout: 0.5
      episodes: 600
      shots: 5                 # support clips per class and episode
      queries: 5               # query clips per class and episode
      lr: 0.0003               # 1e-3 let the embedding scale run away (see recipes/protonet.yaml)
      weight_decay: 0.001
      temperature: auto        # or a number (1: plain softmax(-d²))
      inner_folds: 3
      train_views: speaker     # or both: single-utterance rows of the clips as extra examples
      seed: 0

Training is seeded and deterministic (numpy episodes, torch initialisation, CPU).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from ..speakers import MIN_SPEAKER_UTTERANCES, global_stats
from .base import Classifier, register_model
from .features import FeatureClassifier, _inner_folds, _softmax

__all__ = ["ProtoNetClassifier", "EpisodeSampler"]

WEIGHTS_FILE = "head.safetensors"
STATE_FILE = "protonet.npz"
_NORMALISATIONS = ("speaker", "global", "none")
_MODES = ("speaker", "none")  # speaker-adapted, single utterance
#: the backbone of the shipped recipe (and of the default model): GE2E LSTM 2+3 mean+std, librosa without formants
DEFAULT_FEATURES = ({"name": "ge2e", "layer": "lstm2,lstm3", "pool": "mean,std"}, {"name": "librosa", "n_formants": 0})


class EpisodeSampler:
    """Draws N-way episodes whose support and query clips of a class come from different speakers.

    For every class, its clips are grouped by corpus when the class is in at least two corpora,
    else by speaker; each episode splits the class's groups at random into a support side and a
    query side (both non-empty) and draws ``shots`` support clips from the first and ``queries``
    query clips from the second (without replacement where the side has enough clips). A class
    with a single speaker cannot be split that way: its support and query clips are then disjoint
    clips of that speaker (``speaker_disjoint`` lists the classes where this holds).

    Parameters
    ----------
    targets : array of int [shape=(n,)]
        Class index of every clip, ``0 .. n_classes - 1``, every class present.
    speakers, corpora : sequence of str [shape=(n,)]
        Speaker and corpus of every clip (``corpora=None``: one corpus).
    shots, queries : int
        Support and query clips per class and episode.
    """

    def __init__(self, targets, speakers, corpora=None, *, shots: int = 5, queries: int = 5):
        self.targets = np.asarray(targets, dtype=int)
        n = len(self.targets)
        speakers = np.asarray([str(s) for s in speakers])
        corpora = np.asarray(["" for _ in range(n)] if corpora is None else [str(c) for c in corpora])
        if len(speakers) != n or len(corpora) != n:
            raise ConfigError(
                f"got {n} targets, {len(speakers)} speakers and {len(corpora)} corpora; give one each per clip"
            )
        if shots < 1 or queries < 1:
            raise ConfigError(f"episodes need shots >= 1 and queries >= 1, got shots={shots}, queries={queries}")
        self.shots, self.queries = int(shots), int(queries)
        self.n_classes = int(self.targets.max()) + 1 if n else 0
        self.groups: list[list[np.ndarray]] = []  # per class: the clip indices of each group
        self.speaker_disjoint: list[int] = []
        for c in range(self.n_classes):
            rows = np.flatnonzero(self.targets == c)
            if len(rows) < 2:
                raise ConfigError(
                    f"class {c} has {len(rows)} clip(s); episodic training needs at least 2 per class "
                    "(one support, one query)"
                )
            by = corpora if len(np.unique(corpora[rows])) >= 2 else speakers
            keys = np.unique(by[rows])
            if len(keys) >= 2:
                self.groups.append([rows[by[rows] == k] for k in keys])
            else:
                self.groups.append([np.array([r]) for r in rows])  # one speaker: clip-disjoint instead
                self.speaker_disjoint.append(c)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One episode: support [shape=(n_classes, shots)] and query [shape=(n_classes, queries)] clip indices."""
        support = np.empty((self.n_classes, self.shots), dtype=int)
        query = np.empty((self.n_classes, self.queries), dtype=int)
        for c, groups in enumerate(self.groups):
            order = rng.permutation(len(groups))
            cut = int(rng.integers(1, len(groups)))
            s_pool = np.concatenate([groups[g] for g in order[:cut]])
            q_pool = np.concatenate([groups[g] for g in order[cut:]])
            support[c] = rng.choice(s_pool, self.shots, replace=len(s_pool) < self.shots)
            query[c] = rng.choice(q_pool, self.queries, replace=len(q_pool) < self.queries)
        return support, query


@register_model("protonet")
class ProtoNetClassifier(Classifier):
    """Prototypical network: a frozen feature backbone, an MLP embedding head trained on episodes.

    Parameters
    ----------
    features
        Feature sets, as for the ``features`` family (names or ``{"name": ..., **options}``),
        concatenated after standardisation.
    normalisation
        ``"speaker"`` (per-speaker standardisation of every feature set), ``"global"`` or ``"none"``.
    hidden, dim, dropout
        The head: hidden width, embedding width, dropout (see :class:`serkit.networks.protonet.ProtoHead`).
    episodes, shots, queries
        Number of training episodes; support and query clips per class in each.
    lr, weight_decay
        Adam's learning rate and L2 weight decay.
    temperature
        ``τ`` of ``softmax(-d² / τ)``: ``"auto"`` (default) fits one per mode on out-of-fold clips of
        ``inner_folds`` speaker-grouped folds of the training set (``inner_folds`` more heads are
        trained); a number uses it for both modes (``1``: the paper's plain ``softmax(-d²)``).
    inner_folds
        Folds over training speakers for ``temperature: auto``.
    train_views
        ``"speaker"``: the head learns from speaker-standardised rows; ``"both"`` (with
        ``normalisation: speaker``): from those and the single-utterance rows of the same clips.
    min_speaker_utterances
        A speaker with fewer clips is standardised with the training statistics.
    seed
        Seeds the head's initial weights, dropout and the episodes.
    """

    def __init__(
        self,
        features=DEFAULT_FEATURES,
        *,
        normalisation: str = "speaker",
        hidden: int = 128,
        dim: int = 128,
        dropout: float = 0.5,
        episodes: int = 600,
        shots: int = 5,
        queries: int = 5,
        lr: float = 3e-4,
        weight_decay: float = 1e-3,
        temperature="auto",
        inner_folds: int = 3,
        train_views: str = "speaker",
        min_speaker_utterances: int = MIN_SPEAKER_UTTERANCES,
        seed: int = 0,
    ):
        features = [features] if isinstance(features, (str, dict)) else list(features)
        self.features = [dict(f) if isinstance(f, dict) else f for f in features]
        self.normalisation = normalisation
        self.hidden, self.dim, self.dropout = int(hidden), int(dim), float(dropout)
        self.episodes, self.shots, self.queries = int(episodes), int(shots), int(queries)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.temperature = temperature if temperature == "auto" else _positive_temperature(temperature)
        self.inner_folds = int(inner_folds)
        self.train_views = train_views
        if train_views not in ("speaker", "both"):
            raise ConfigError(f"protonet train_views must be 'speaker' or 'both', got {train_views!r}")
        self.min_speaker_utterances = int(min_speaker_utterances)
        self.seed = int(seed)
        if self.inner_folds < 2:
            raise ConfigError(f"protonet inner_folds must be >= 2, got {self.inner_folds}")
        if normalisation not in _NORMALISATIONS:
            raise ConfigError(f"unknown normalisation {normalisation!r}; use one of {', '.join(_NORMALISATIONS)}")
        if not self.features:
            raise ConfigError("a protonet needs at least one feature set, e.g. features: [egemaps]")
        for name, value in (
            ("hidden", self.hidden),
            ("dim", self.dim),
            ("shots", self.shots),
            ("queries", self.queries),
        ):
            if value < 1:
                raise ConfigError(f"protonet {name} must be >= 1, got {value}")
        if self.episodes < 0:
            raise ConfigError(f"protonet episodes must be >= 0, got {self.episodes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"protonet dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ConfigError(f"protonet lr must be > 0, got {self.lr}")

    # the constructor argument, stored as an instance attribute (shadows the base class's property)
    normalisation: str = "speaker"

    # -- the frozen backbone: the features family's extraction, cache and standardisation -------
    def _backbone(self):
        """A :class:`FeatureClassifier` used for its feature sets and standardisation only (never fitted)."""
        if not hasattr(self, "_backbone_cache"):
            self._backbone_cache = FeatureClassifier(
                self.features, normalisation=self.normalisation, min_speaker_utterances=self.min_speaker_utterances
            )
        backbone = self._backbone_cache
        if hasattr(self, "global_mean_"):
            backbone.global_mean_, backbone.global_std_ = self.global_mean_, self.global_std_
        return backbone

    @property
    def sampling_rate(self) -> int:  # type: ignore[override]
        return self._backbone().sampling_rate

    def _rows(self, blocks: Sequence[np.ndarray], speakers) -> np.ndarray:
        """[shape=(n, d)] float32: every block standardised (per speaker when ``speakers`` is given), concatenated."""
        backbone = self._backbone()
        return np.concatenate([backbone._normalise(b, i, speakers) for i, b in enumerate(blocks)], axis=1).astype(
            np.float32
        )

    def _blocks_from_utterances(self, utterances, progress: bool) -> list[np.ndarray]:
        return self._backbone()._blocks_from_utterances(list(utterances), progress)[0]

    def _blocks_from_signals(self, signals) -> list[np.ndarray]:
        return self._backbone()._blocks_from_signals(list(signals))[0]

    # -- declared capabilities ------------------------------------------------------------------
    @property
    def has_embedding(self) -> bool:  # type: ignore[override]
        return True

    # -- learning -------------------------------------------------------------------------------
    def fit(self, utterances: Sequence, *, progress: bool = True) -> ProtoNetClassifier:
        """Extract (or read from the cache) the backbone's features of ``utterances`` and train the head."""
        utterances = list(utterances)
        if len(utterances) < 2:
            raise ConfigError(f"cannot train on {len(utterances)} utterance(s); give at least two classes of examples")
        blocks = self._blocks_from_utterances(utterances, progress)
        return self.fit_features(
            blocks,
            [str(u.label) for u in utterances],
            [str(u.speaker) for u in utterances],
            [str(u.corpus) for u in utterances],
        )

    def fit_features(
        self,
        blocks: Sequence[np.ndarray],
        labels: Sequence[str],
        speakers: Sequence[str],
        corpora: Sequence[str] | None = None,
    ) -> ProtoNetClassifier:
        """Train on precomputed backbone features: one [shape=(n, d_b)] array per feature set."""
        import torch

        from ..runtime import default_threads

        labels = [str(l) for l in labels]
        labels_ = sorted(set(labels))
        if len(labels_) < 2:
            raise ConfigError(f"training data has a single label {labels_}; a classifier needs at least two")
        blocks = [np.nan_to_num(np.asarray(b, np.float64), nan=0.0, posinf=0.0, neginf=0.0) for b in blocks]
        if len(blocks) != len(self.features):
            raise ConfigError(f"got {len(blocks)} feature blocks for {len(self.features)} feature sets")
        speakers = np.asarray([str(s) for s in speakers])
        corpora = None if corpora is None else np.asarray([str(c) for c in corpora])
        stats = [global_stats(b) for b in blocks]
        self.global_mean_ = [m for m, _ in stats]
        self.global_std_ = [s for _, s in stats]
        targets = np.array([labels_.index(l) for l in labels])
        n_classes = len(labels_)
        # the rows each mode feeds the head: speaker-standardised (adapted) / training statistics (single clip)
        rows = {"speaker": self._rows(blocks, speakers if self.normalisation == "speaker" else None)}
        rows["none"] = rows["speaker"] if self.normalisation != "speaker" else self._rows(blocks, None)
        previous = torch.get_num_threads()
        torch.set_num_threads(default_threads())
        try:
            if self.temperature == "auto":
                temperature, inner = self._fit_temperature(rows, targets, speakers, corpora, n_classes)
            else:
                temperature, inner = {m: float(self.temperature) for m in _MODES}, 0
            everything = np.arange(len(targets))
            head, losses, sampler = self._train_head(rows, everything, targets, speakers, corpora, n_classes)
            self.head_ = head
            self.labels_ = labels_
            self.temperature_ = temperature
            self.prototypes_ = {m: self._class_means(self._embed_rows(rows[m]), targets, n_classes) for m in _MODES}
        finally:
            torch.set_num_threads(previous)
        tail = losses[-100:] or [float("nan")]
        self.fitted_ = {
            "in_dim": int(rows["speaker"].shape[1]),
            "episodes_run": len(losses),
            "final_loss": float(np.mean(tail)),
            # classes whose support and query clips could only be different clips of one speaker
            "clip_disjoint_classes": [labels_[c] for c in sampler.speaker_disjoint],
            "n_clips": int(len(targets)),
            "temperature": dict(temperature),
            "temperature_folds": inner,
        }
        return self

    def _train_head(self, rows: dict, idx: np.ndarray, targets, speakers, corpora, n_classes: int):
        """A head trained on episodes of the clips ``idx``: ``(head in eval mode, losses, sampler)``.

        ``train_views: both`` makes each clip's single-utterance row an extra example next to its
        speaker-standardised row (same speaker, so never on the other side of an episode).
        """
        import torch

        from ..networks.protonet import ProtoHead, prototypical_loss

        both = self.train_views == "both" and self.normalisation == "speaker"
        views = [rows["speaker"], rows["none"]] if both else [rows["speaker"]]
        x = np.concatenate([v[idx] for v in views])
        k = len(views)
        targets, speakers = np.tile(targets[idx], k), np.tile(speakers[idx], k)
        corpora = None if corpora is None else np.tile(corpora[idx], k)
        sampler = EpisodeSampler(targets, speakers, corpora, shots=self.shots, queries=self.queries)
        rng = np.random.default_rng(self.seed)
        torch.manual_seed(self.seed)
        head = ProtoHead(x.shape[1], hidden=self.hidden, dim=self.dim, dropout=self.dropout)
        optimiser = torch.optim.Adam(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt = torch.from_numpy(np.asarray(x, np.float32))
        query_targets = torch.arange(n_classes).repeat_interleave(self.queries)
        losses = []
        head.train()
        for _ in range(self.episodes):
            support, query = sampler.sample(rng)
            emb_s = head(xt[torch.from_numpy(support.reshape(-1))]).view(n_classes, self.shots, -1)
            emb_q = head(xt[torch.from_numpy(query.reshape(-1))])
            loss = prototypical_loss(emb_s, emb_q, query_targets)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        return head.eval(), losses, sampler

    def _fit_temperature(self, rows: dict, targets, speakers, corpora, n_classes: int) -> tuple[dict, int]:
        """Per mode, the ``τ`` of ``softmax(-d² / τ)`` minimising the log-loss of out-of-fold clips.

        Heads are trained on ``inner_folds`` speaker-grouped folds of the training set and score the
        held-out speakers' clips against prototypes of the rest (distances on clips the head was
        trained on are far too small, which made raw ``softmax(-d²)`` give ~1e-30 to every other class).
        Returns the temperatures and the number of folds used (0: none could be used, ``τ = 1``).
        """
        from scipy.optimize import minimize_scalar

        d2 = {m: [] for m in _MODES}
        truth = []
        used = 0
        for tr, va in _inner_folds(targets, speakers, self.inner_folds, self.seed):
            if len(np.unique(targets[tr])) < n_classes:
                continue
            try:
                head, _, _ = self._train_head(rows, tr, targets, speakers, corpora, n_classes)
            except ConfigError:  # a class with too few clips in this fold
                continue
            used += 1
            self.head_ = head
            for m in _MODES:
                protos = self._class_means(self._embed_rows(rows[m][tr]), targets[tr], n_classes)
                d2[m].append(_squared_distances(self._embed_rows(rows[m][va]), protos))
            truth.append(targets[va])
        del self.head_
        if not used:
            return {m: 1.0 for m in _MODES}, 0
        t = np.concatenate(truth)
        out = {}
        for m in _MODES:
            z = -np.concatenate(d2[m])

            def nll(log_temp, z=z):
                p = _softmax(z / np.exp(log_temp))
                return -np.mean(np.log(np.maximum(p[np.arange(len(t)), t], 1e-12)))

            out[m] = float(np.exp(minimize_scalar(nll, bounds=(-5.0, 12.0), method="bounded").x))
        return out, used

    @staticmethod
    def _class_means(emb: np.ndarray, targets: np.ndarray, n_classes: int) -> np.ndarray:
        return np.stack([emb[targets == c].mean(0) for c in range(n_classes)])

    def _embed_rows(self, x: np.ndarray) -> np.ndarray:
        """[shape=(n, dim)] float64: the head's output for standardised rows."""
        import torch

        with torch.no_grad():
            return self.head_(torch.from_numpy(np.asarray(x, np.float32))).double().numpy()

    # -- predicting -----------------------------------------------------------------------------
    def _proba_from_blocks(self, blocks, speakers) -> np.ndarray:
        self._check_fitted()
        mode = "speaker" if speakers is not None and self.normalisation == "speaker" else "none"
        emb = self._embed_rows(self._rows(blocks, speakers if mode == "speaker" else None))
        return _softmax(-_squared_distances(emb, self.prototypes_[mode]) / self.temperature_[mode])

    def _predict_signals(self, signals, speakers) -> np.ndarray:
        if len(signals) == 0:
            return np.zeros((0, len(self.labels_)))
        return self._proba_from_blocks(self._blocks_from_signals(signals), speakers)

    def _predict_utterances(self, utterances, speakers, *, progress: bool) -> np.ndarray:
        if len(utterances) == 0:
            return np.zeros((0, len(self.labels_)))
        return self._proba_from_blocks(self._blocks_from_utterances(utterances, progress), speakers)

    # -- embedding --------------------------------------------------------------------------------
    def embed_utterances(self, utterances: Sequence, *, progress: bool = True) -> np.ndarray:
        """[shape=(n, dim)] float64: the head's output on each utterance's single-utterance rows."""
        self._check_fitted()
        utterances = list(utterances)
        if not utterances:
            return np.zeros((0, self.dim))
        return self._embed_rows(self._rows(self._blocks_from_utterances(utterances, progress), None))

    def embed_signals(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """[shape=(n, dim)] like :meth:`embed_utterances`, for float32 mono signals at :attr:`sampling_rate`."""
        self._check_fitted()
        signals = list(signals)
        if not signals:
            return np.zeros((0, self.dim))
        return self._embed_rows(self._rows(self._blocks_from_signals(signals), None))

    # -- persistence ----------------------------------------------------------------------------
    def _options(self) -> dict:
        return {
            "features": [f if isinstance(f, str) else dict(f) for f in self.features],
            "normalisation": self.normalisation,
            "hidden": self.hidden,
            "dim": self.dim,
            "dropout": self.dropout,
            "episodes": self.episodes,
            "shots": self.shots,
            "queries": self.queries,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "temperature": self.temperature,
            "inner_folds": self.inner_folds,
            "train_views": self.train_views,
            "min_speaker_utterances": self.min_speaker_utterances,
            "seed": self.seed,
        }

    def config(self) -> dict:
        cfg = self._options()
        cfg["feature_configs"] = [e.full_config() for e in self._backbone()._extractors()]
        if hasattr(self, "fitted_"):
            cfg["fitted"] = json.loads(json.dumps(self.fitted_, default=float))
        return cfg

    def save_weights(self, directory: Path) -> list[str]:
        """``head.safetensors`` (the MLP's state dict) and ``protonet.npz`` (standardisation, prototypes)."""
        from safetensors.torch import save_file

        self._check_fitted()
        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head_.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"family": self.family})
        arrays = {}
        for i, (m, s) in enumerate(zip(self.global_mean_, self.global_std_)):
            arrays[f"global_mean_{i}"] = np.asarray(m, np.float64)
            arrays[f"global_std_{i}"] = np.asarray(s, np.float64)
        for mode in _MODES:
            arrays[f"prototypes_{mode}"] = np.asarray(self.prototypes_[mode], np.float64)
            arrays[f"temperature_{mode}"] = np.array(self.temperature_[mode], np.float64)
        np.savez(directory / STATE_FILE, **arrays)
        return [WEIGHTS_FILE, STATE_FILE]

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> ProtoNetClassifier:
        from ..artifact import load_npz, model_file
        from ..networks.protonet import ProtoHead
        from .neural import load_state

        directory = Path(directory)
        options = {k: v for k, v in config.items() if k not in ("feature_configs", "fitted")}
        try:
            model = cls(**options)
        except TypeError as exc:
            raise ModelError(
                f"model.json of '{directory}' does not describe a protonet ({exc}); re-train the model"
            ) from None
        fitted = dict(config.get("fitted") or {})
        z = load_npz(model_file(directory, STATE_FILE))
        try:
            n = len(model.features)
            model.global_mean_ = [z[f"global_mean_{i}"] for i in range(n)]
            model.global_std_ = [z[f"global_std_{i}"] for i in range(n)]
            model.prototypes_ = {mode: z[f"prototypes_{mode}"] for mode in _MODES}
            model.temperature_ = {mode: _positive_temperature(z[f"temperature_{mode}"]) for mode in _MODES}
            in_dim = int(fitted.get("in_dim") or sum(len(m) for m in model.global_mean_))
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"cannot read the weights in '{directory}' ({exc}); re-train or re-copy the model"
            ) from None
        for mode, p in model.prototypes_.items():
            if p.shape != (len(labels), model.dim):
                raise ModelError(
                    f"'{directory}': {mode} prototypes have shape {p.shape}, expected ({len(labels)}, {model.dim}) "
                    "for the labels in model.json; re-train or re-copy the model"
                )
        head = ProtoHead(in_dim, hidden=model.hidden, dim=model.dim, dropout=model.dropout)
        load_state(head, model_file(directory, WEIGHTS_FILE), f"a protonet head ({in_dim} → {model.dim})")
        model.head_ = head.eval()
        model.labels_ = list(labels)
        model.fitted_ = fitted
        return model


def _squared_distances(x: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """[shape=(n, k)] float64 squared Euclidean distances, by :func:`serkit.networks.protonet.squared_distances`."""
    import torch

    from ..networks.protonet import squared_distances

    return squared_distances(
        torch.from_numpy(np.asarray(x, np.float64)), torch.from_numpy(np.asarray(prototypes, np.float64))
    ).numpy()


def _positive_temperature(value) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not np.isfinite(t) or t <= 0:
        raise ConfigError(f"protonet temperature must be 'auto' or a number > 0, got {value!r}")
    return t

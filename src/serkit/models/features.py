"""Classic classifiers on utterance-level features: SVM (linear, RBF), random forest, logistic
regression, and stacking over several feature sets.

Features come from registered extractors (``serkit.features``) through the disk cache.
Normalisation is either ``"global"`` (one standardisation fitted on the training set) or
``"speaker"``: every speaker's features are standardised with that speaker's own statistics,
computed from its unlabelled utterances — at test time from the test speaker's audio, which needs
no labels and so keeps the evaluation speaker-independent. Hyperparameters are chosen by inner
cross-validation grouped by training speaker; test speakers are never seen during the search.

``speeds`` adds speed-perturbed views of every clip (tape-style, e.g. ``[0.9, 1, 1.1]``): the
classifier learns from all views of the training clips (each view standardised with its own
statistics), and a clip's probabilities are the geometric mean over its views.

``channels`` adds degraded copies of every *training* clip (:mod:`serkit.channels`: ``telephone``,
``codec``, ``noise``, ``level``), extracted through :class:`serkit.features.base.ChannelView` and
cached: extra training rows with their clip's label and speaker. Predictions use the clean views only.

**Domain statistics (CORAL).** Fitting keeps, per speed view, the mean and Ledoit-Wolf covariance
(:mod:`serkit.domain`) of the rows the classifier was fitted on: every feature set standardised
by the model's own normalisation (``speaker``: each training speaker with its own statistics;
``global``: the training set's; ``none``: raw), the sets concatenated in recipe order. They are
saved in ``domain.npz`` (float32, no pickle), so :mod:`serkit.adaptation` can adapt a trained model
without its training data. The target side is the *single-utterance space* (each set standardised
with the training set's global statistics — what an ``adapt=False`` prediction feeds the
classifier). An adapted model holds a CORAL map ``(A, b)`` per view from that space onto the
fitted rows' distribution, applied before the classifier in single-utterance predictions;
speaker-adapted predictions (``adapt=True``) are left as they are (per-speaker standardisation
already aligns each speaker's mean and variance).

**Voice groups (``voices``).** A model with ``normalisation: speaker`` can be adapted to target
audio whose speakers are unknown (:meth:`FeatureClassifier.adapt_voices`): the target's clips are
clustered by voice with the GE2E speaker encoder (:func:`serkit.speakers.voice_groups`), each group
is standardised like one speaker, and a small head self-trained on the target's confident
predictions (:func:`serkit.domain.fit_target_head`) refines the probabilities. The adapted model
keeps the groups' centroids and statistics and the head (``voices.npz``): a new single clip joins
the nearest group. Speaker-adapted predictions (``adapt=True``, speakers known) are unchanged.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..domain import SELF_TRAIN_C, SELF_TRAIN_FRACTION, DomainStats, TargetHead, domain_stats
from ..errors import ConfigError, ModelError
from ..speakers import (
    FEATURE_STD_FLOOR,
    MIN_SPEAKER_UTTERANCES,
    VOICE_GROUPS,
    class_stats,
    global_stats,
    group_stats,
    nearest_voice,
    speaker_standardise,
    voice_groups,
)
from .base import Classifier, register_model

__all__ = ["FeatureClassifier", "balanced_corpus_weights"]

#: the voice embedding of ``adapt_voices``: the GE2E speaker encoder's utterance vector
_VOICE_FEATURES = ("ge2e", {"layer": "embedding"})

_CLASSIFIERS = ("svm-linear", "svm-rbf", "logreg", "rf", "stacking")
_NORMALISATIONS = ("global", "speaker", "none")

_DEFAULT_GRIDS = {
    "svm-linear": {"C": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
    "svm-rbf": {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale"]},
    "logreg": {"C": [1e-3, 1e-2, 1e-1, 1.0]},
    "rf": {"max_features": ["sqrt", 0.1]},
}


def _feature_spec(spec) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and "name" in spec:
        opts = dict(spec)
        return opts.pop("name"), opts
    raise ConfigError(f"feature entry {spec!r} must be a name like 'compare' or a mapping with a 'name' key")


def _make_estimator(kind: str, params: dict, class_weight, seed: int, probability: bool):
    import warnings

    # SVC(probability=True) (Platt scaling) is deprecated from scikit-learn 1.9 in favour of
    # CalibratedClassifierCV, which measured 2 UA points worse on EmoDB LOSO; constraints.txt pins 1.9.
    warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated", category=FutureWarning)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "svm-linear":
        clf = SVC(kernel="linear", class_weight=class_weight, probability=probability, random_state=seed, **params)
    elif kind == "svm-rbf":
        clf = SVC(kernel="rbf", class_weight=class_weight, probability=probability, random_state=seed, **params)
    elif kind == "logreg":
        clf = LogisticRegression(class_weight=class_weight, max_iter=2000, random_state=seed, **params)
    elif kind == "rf":
        from sklearn.ensemble import RandomForestClassifier

        rf_class_weight = "balanced_subsample" if class_weight == "balanced" else class_weight
        clf = RandomForestClassifier(
            n_estimators=300, class_weight=rf_class_weight, random_state=seed, n_jobs=-1, **params
        )
        return clf  # trees need no scaling
    else:  # pragma: no cover - validated in __init__ callers
        raise ConfigError(f"unknown classifier {kind!r}; known: {', '.join(_CLASSIFIERS)}")
    return make_pipeline(StandardScaler(), clf)


#: ``class_weight`` values: sklearn's (``None``, ``"balanced"``) and serkit's corpus-aware one
_CLASS_WEIGHTS = (None, "balanced", "balanced-corpus")
_CHANNEL_COPIES = ("each", "one")


def balanced_corpus_weights(labels, corpora) -> np.ndarray:
    """Per-row weights [shape=(n,)], mean 1: every class gets the same total weight, and within a
    class every corpus that has it the same share (``class_weight: balanced-corpus``).

    Row ``i`` of class ``y`` from corpus ``c`` weighs ``1 / (n[c, y] * m[y])``, ``n[c, y]`` the rows of
    class ``y`` in corpus ``c`` and ``m[y]`` the corpora that have class ``y``. So the largest corpus
    does not outvote the others, and a class only some corpora have is not outweighed by the classes
    every corpus has. With one corpus this is sklearn's ``"balanced"``.

    >>> balanced_corpus_weights(["a", "a", "a", "b", "a"], ["x", "x", "x", "x", "y"]).round(3).tolist()
    [0.417, 0.417, 0.417, 2.5, 1.25]
    """
    labels, corpora = np.asarray([str(v) for v in labels]), np.asarray([str(v) for v in corpora])
    w = np.zeros(len(labels))
    for y in np.unique(labels):
        rows = labels == y
        have = np.unique(corpora[rows])
        for c in have:
            cell = rows & (corpora == c)
            w[cell] = 1.0 / (cell.sum() * len(have))
    return w * len(w) / w.sum()


def _fit_weighted(est, x, y, w):
    """``est.fit(x, y)`` with per-row weights ``w`` (``None``: unweighted) passed to the classifier."""
    if w is None:
        return est.fit(x, y)
    if hasattr(est, "steps"):  # a Pipeline: the weights go to its last step
        return est.fit(x, y, **{f"{est.steps[-1][0]}__sample_weight": w})
    return est.fit(x, y, sample_weight=w)


def _grid_points(grid: dict) -> list[dict]:
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(grid)) if grid else [{}]


def _inner_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int):
    """Folds over training *speakers* (grouped); with one speaker, stratified utterance folds."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    n_groups = len(np.unique(groups))
    if n_groups >= 2:
        return list(GroupKFold(n_splits=min(k, n_groups)).split(y, y, groups))
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    splits = max(2, min(k, int(counts.min())))
    return list(StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed).split(y, y))


def _select(kind, grid, x, y, groups, class_weight, k, seed, w=None) -> tuple[dict, float]:
    """Grid point with the best inner-CV UA (balanced accuracy) on the training speakers (``w``: row weights)."""
    from sklearn.metrics import balanced_accuracy_score

    points = _grid_points(grid)
    if len(points) == 1:
        return points[0], float("nan")
    folds = _inner_folds(y, groups, k, seed)
    best, best_score = points[0], -1.0
    for params in points:
        scores = []
        for tr, va in folds:
            if len(np.unique(y[tr])) < 2:
                continue
            est = _make_estimator(kind, params, class_weight, seed, probability=False)
            est = _fit_weighted(est, x[tr], y[tr], None if w is None else w[tr])
            scores.append(balanced_accuracy_score(y[va], est.predict(x[va])))
        score = float(np.mean(scores)) if scores else -1.0
        if score > best_score + 1e-9:
            best, best_score = params, score
    return best, best_score


def _parse_channels(value) -> list[str]:
    """``channels`` as a list of condition names (``"telephone,codec"`` or a list); an unknown name lists the valid ones."""
    from ..channels import CONDITIONS

    if value is None or value is False:
        return []
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    for v in items:
        CONDITIONS.get(v)  # an unknown name lists the valid ones
    if len(set(items)) != len(items):
        raise ConfigError(f"channels {items} lists a condition twice")
    return items


@register_model("features")
class FeatureClassifier(Classifier):
    """A scikit-learn classifier on utterance-level features.

    Parameters
    ----------
    features
        Feature sets by registered name (``"compare"``, ``"egemaps"``, ``"librosa"``, ``"soundnet"``)
        or mappings ``{"name": ..., **options}``. Several sets are concatenated (early fusion),
        or combined by stacking when ``classifier="stacking"``.
    classifier
        ``"svm-linear"``, ``"svm-rbf"``, ``"logreg"``, ``"rf"`` or ``"stacking"``.
    normalisation
        ``"speaker"`` (per-speaker standardisation), ``"global"`` or ``"none"``.
    grid
        Hyperparameter grid searched by inner speaker-grouped CV (default per classifier).
    class_weight
        ``"balanced"`` (default: every class the same total weight), ``"balanced-corpus"`` (row
        weights from :func:`balanced_corpus_weights`: every class the same total weight and, within
        a class, every corpus that has it the same share — for training on several corpora) or
        ``None``.
    base
        For stacking: the classifier used on each feature set (default ``"svm-linear"``).
    inner_folds
        Folds of the inner (training-speaker) cross-validation.
    speeds
        Speed factors of the views of each clip (``[1.0]``: the clip as it is). With several, every
        view of a training clip is a training example and predictions average the views'
        log-probabilities; extraction costs one pass per view.
    calibration
        How an SVM turns scores into probabilities: ``"decision"`` (default: softmax of the
        one-vs-rest decision values with a temperature fitted on inner-CV out-of-fold scores; its
        argmax is the SVM's decision) or ``"platt"`` (sigmoids fitted by internal CV; its argmax
        can differ from the SVM's decision, and with a very small C it can collapse to uniform
        probabilities).
    channels
        Channel conditions (:data:`serkit.channels.CONDITIONS`: ``telephone``, ``codec``, ``noise``,
        ``level``) for training augmentation. Each adds one degraded copy of every training clip
        (of the unchanged clip, speed 1; seeded by ``seed``, the condition and the clip, so a
        clip's copy is the same in every run and cached like any feature) as extra training rows
        with the clip's label and speaker: ``n_clips × (len(speeds) + len(channels))`` rows in all
        (``selected["training_rows"]`` in ``model.json``). A channel view is standardised like a
        speed view: with ``speaker`` normalisation each training speaker's degraded clips with
        their own statistics (what an adapted prediction of a telephone speaker sees), falling
        back, like single clips, to the clean training set's global statistics, which are also what
        ``global`` uses. ``noise`` mixes in coloured noise or babble of up to 8 training clips
        (chosen by ``seed``). Predictions use the clean views only; ``fit_target`` and
        ``fit_features`` (no audio) refuse channels. The domain statistics are those of the clean rows.
    channel_copies
        ``"each"`` (default): every condition in ``channels`` adds its own copy of every training clip.
        ``"one"``: every training clip gets a single degraded copy, through one of ``channels`` drawn
        for that clip (uniformly, seeded by ``seed`` and the clip's file name and segment, so the
        draw is the same in every run and in every fold that trains on the clip): ``n_clips ×
        (len(speeds) + 1)`` rows whatever the number of conditions, and each condition's features
        read from the same cache entries as under ``"each"``. A speaker's copies then mix
        conditions and are standardised together (``benchmarks/channels.py`` measures both).
    """

    def __init__(
        self,
        features=("compare",),
        *,
        classifier: str = "svm-linear",
        normalisation: str = "speaker",
        grid: dict | None = None,
        class_weight: str | None = "balanced",
        base: str = "svm-linear",
        inner_folds: int = 3,
        min_speaker_utterances: int = MIN_SPEAKER_UTTERANCES,
        calibration: str = "decision",
        speeds: Sequence[float] = (1.0,),
        seed: int = 0,
        channels: Sequence[str] = (),
        channel_copies: str = "each",
    ):
        from ..features.base import parse_speeds

        self.features = [features] if isinstance(features, (str, dict)) else list(features)
        self.classifier = classifier
        self.normalisation = normalisation
        self.grid = grid
        self.class_weight = class_weight
        self.base = base
        self.inner_folds = inner_folds
        self.min_speaker_utterances = min_speaker_utterances
        self.calibration = calibration
        self.speeds = parse_speeds(speeds)
        self.seed = seed
        self.channels = _parse_channels(channels)
        self.channel_copies = channel_copies
        if channel_copies not in _CHANNEL_COPIES:
            raise ConfigError(
                f"unknown channel_copies {channel_copies!r}; use 'each' (a copy per condition) "
                "or 'one' (one copy per clip, its condition drawn)"
            )
        if class_weight not in _CLASS_WEIGHTS:
            raise ConfigError(
                f"unknown class_weight {class_weight!r}; use one of balanced, balanced-corpus, null (no weights)"
            )
        if calibration not in ("platt", "decision"):
            raise ConfigError(f"unknown calibration {calibration!r}; use 'platt' or 'decision'")
        if classifier not in _CLASSIFIERS:
            raise ConfigError(f"unknown classifier {classifier!r}; known: {', '.join(_CLASSIFIERS)}")
        if normalisation not in _NORMALISATIONS:
            raise ConfigError(f"unknown normalisation {normalisation!r}; use one of {', '.join(_NORMALISATIONS)}")
        if classifier == "stacking" and base not in _DEFAULT_GRIDS:
            raise ConfigError(f"stacking base {base!r} must be one of {', '.join(_DEFAULT_GRIDS)}")
        if not self.features:
            raise ConfigError("a feature classifier needs at least one feature set, e.g. features: [compare]")

    # -- features ---------------------------------------------------------------------------------
    def _extractors(self):
        from ..features import get_extractor

        if not hasattr(self, "_extractors_cache"):
            self._extractors_cache = [get_extractor(n, **o) for n, o in map(_feature_spec, self.features)]
        return self._extractors_cache

    @property
    def sampling_rate(self) -> int:  # type: ignore[override]
        return self._extractors()[0].sampling_rate

    # the constructor argument, stored as an instance attribute (shadows the base class's property)
    normalisation: str = "speaker"

    def _view_extractors(self) -> list[list]:
        """Per speed view, the extractor of each feature set (speed 1: the extractors themselves)."""
        from ..features.base import SpeedView

        return [[e if f == 1.0 else SpeedView(e, f) for e in self._extractors()] for f in self.speeds]

    def through_channel(self, condition: str, *, seed: int = 0, **options) -> FeatureClassifier:
        """A shallow copy of this fitted model that hears every clip through ``condition``
        (:mod:`serkit.channels`), its features extracted by :class:`serkit.features.base.ChannelView`
        through the cache: for measuring a model on telephone, codec, noisy or level-shifted audio
        (``benchmarks/channels.py``); ``options`` fix the condition's settings (``snr=10``). The copy
        shares the classifier; the original is unchanged."""
        import copy

        from ..features.base import ChannelView

        model = copy.copy(self)
        model._extractors_cache = [ChannelView(e, condition, seed, options=options) for e in self._extractors()]
        return model

    def _blocks_from_utterances(self, utterances, progress) -> list[list[np.ndarray]]:
        """Per speed view, one [n, d_b] block per feature set."""
        from ..features import extract

        return [[extract(e, utterances, progress=progress) for e in view] for view in self._view_extractors()]

    def _blocks_from_signals(self, signals) -> list[list[np.ndarray]]:
        return [[self._signal_rows(e, signals) for e in view] for view in self._view_extractors()]

    def _signal_rows(self, extractor, signals) -> np.ndarray:
        """[n, d] rows of ``extractor`` for signals at the model's rate (resampled to the extractor's)."""
        from ..audio import pad_to, resample
        from ..features.base import functionals_parallel

        rate, e = self.sampling_rate, extractor
        sigs = signals if e.sampling_rate == rate else [resample(s, rate, e.sampling_rate) for s in signals]
        n = int(e.min_duration * e.sampling_rate)
        return functionals_parallel(e, [pad_to(np.asarray(s, np.float32), n) for s in sigs])

    def _normalise(self, block: np.ndarray, b: int, speakers, mix=None) -> np.ndarray:
        """Standardise block ``b`` (numbered across views: view * n_feature_sets + set). ``mix``: each
        row's estimated class probabilities, for speaker statistics given the speaker's emotion mix
        (:func:`serkit.speakers.speaker_stats`; a model fitted before serkit kept class statistics
        standardises without it)."""
        block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        if self.normalisation == "none":
            return block.astype(np.float64)
        mean, std = self.global_mean_[b], self.global_std_[b]
        stats = getattr(self, "class_stats_", None)  # kept only by models with normalisation: speaker
        by_mix = mix is not None and stats is not None
        return speaker_standardise(
            block,
            speakers if self.normalisation == "speaker" else None,
            mean,
            std,
            min_utterances=self.min_speaker_utterances,
            floor=FEATURE_STD_FLOOR,
            emotion_mix=mix if by_mix else None,
            class_stats=stats[b] if by_mix else None,
        )

    # -- learning ---------------------------------------------------------------------------------
    def fit(self, utterances, *, progress: bool = True) -> FeatureClassifier:
        utterances = list(utterances)
        if len(utterances) < 2:
            raise ConfigError(f"cannot train on {len(utterances)} utterance(s); give at least two classes of examples")
        views = self._blocks_from_utterances(utterances, progress)
        speakers = np.array([u.speaker for u in utterances])
        channel_views = self._channel_blocks(utterances, progress) if self.channels else None
        self._fit_views(
            views,
            [u.label for u in utterances],
            speakers,
            channel_views=channel_views,
            corpora=[u.corpus for u in utterances],
        )
        self.selected_["training_rows"] = len(utterances) * (len(views) + len(channel_views or []))
        return self

    def fit_features(self, blocks: list[np.ndarray], labels: Sequence[str], speakers: np.ndarray):
        """Fit on precomputed feature blocks (one [n, d_b] array per feature set) of one view."""
        if self.channels:
            raise ConfigError(
                f"fit_features has no audio to degrade; this model has channels {self.channels}: use fit()"
            )
        if len(self.speeds) != 1:
            raise ConfigError(
                f"fit_features takes one view of the clips; this model has speeds {self.speeds}: use fit()"
            )
        return self._fit_views([blocks], labels, speakers)

    def fit_target(
        self, utterances, target, *, method: str = "coral", shrink_to: str = "diagonal", progress: bool = True
    ) -> FeatureClassifier:
        """Train-time CORAL: fit on the training rows re-coloured to the unlabelled ``target`` clips' statistics.

        Per speed view, the rows the classifier is normally fitted on (each feature set standardised
        by the model's normalisation — per training speaker for ``speaker``) are mapped by
        :func:`serkit.domain.coral_map` ``direction="source-to-target"`` onto the mean and
        covariance of the target clips in the *single-utterance space* (each set standardised
        with the training set's global statistics: what an ``adapt=False`` prediction feeds the
        classifier), then the classifier is fitted on the mapped rows. Target clips are then
        classified as they come (no map at prediction time). Covariances: Ledoit-Wolf, the target's
        shrunk towards ``shrink_to`` (as :data:`serkit.adaptation.SHRINK_TO`). The stored
        ``source_stats_`` are, as always, the statistics of the rows the classifier was fitted on
        — here the mapped rows, i.e. the target's — so a later ``serkit adapt`` maps a new domain
        onto what this classifier expects. Speaker-adapted predictions (``adapt=True``) feed
        speaker-standardised rows to a classifier fitted in the target's space: use
        single-utterance predictions with a target-trained model.
        """
        if method != "coral":
            raise ConfigError(f"train-time adaptation of a feature model is coral, not {method!r}")
        if self.channels:
            raise ConfigError(
                f"train-time CORAL does not combine with channel augmentation (channels {self.channels}); "
                "train without --target or set model.channels=[]"
            )
        utterances, target = list(utterances), list(target)
        if len(utterances) < 2:
            raise ConfigError(f"cannot train on {len(utterances)} utterance(s); give at least two classes of examples")
        views = self._blocks_from_utterances(utterances, progress)
        target_views = self._blocks_from_utterances(target, progress)
        speakers = np.array([u.speaker for u in utterances])
        return self._fit_views(
            views,
            [u.label for u in utterances],
            speakers,
            target_views=target_views,
            shrink_to=shrink_to,
            corpora=[u.corpus for u in utterances],
        )

    def _fit_views(
        self,
        views: list[list[np.ndarray]],
        labels: Sequence[str],
        speakers: np.ndarray,
        *,
        target_views: list[list[np.ndarray]] | None = None,
        shrink_to: str = "diagonal",
        corpora: Sequence[str] | None = None,
        channel_views: list[list[np.ndarray]] | None = None,
    ):
        """Fit on every view's blocks: the views' rows are stacked as extra training examples.

        ``target_views`` (train-time CORAL, :meth:`fit_target`): each view's rows are re-coloured to
        the target's single-utterance statistics first. ``corpora`` (each clip's corpus) feeds
        ``class_weight: balanced-corpus``; without it every clip counts as one corpus.
        """
        labels_ = sorted(set(labels))
        if len(labels_) < 2:
            raise ConfigError(f"training data has a single label {labels_}; a classifier needs at least two")
        blocks = [b for view in views for b in view]
        clean = [np.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0) for b in blocks]
        stats = [global_stats(b) for b in clean]
        self.global_mean_ = [m for m, _ in stats]
        self.global_std_ = [sd for _, sd in stats]
        nb = len(views[0])
        xs = [
            np.concatenate([self._normalise(view[b], v * nb + b, speakers) for v, view in enumerate(views)])
            for b in range(nb)
        ]
        n = len(labels)
        y_clip = np.array([labels_.index(l) for l in labels])
        # per block, each class's mean and variance of the speaker-standardised clean rows: what an
        # adapted prediction given a speaker's emotion mix standardises towards (the robust rule)
        self.class_stats_ = (
            [class_stats(x[v * n : (v + 1) * n], y_clip, len(labels_)) for v in range(len(views)) for x in xs]
            if self.normalisation == "speaker"
            else None
        )
        if target_views is not None:
            xs = self._recolour(xs, views, speakers, target_views, shrink_to)
        y = np.tile(y_clip, len(views))
        # inner folds group by speaker; with one training speaker, by clip: a clip's views stay together
        by = np.asarray(speakers) if len(views) == 1 or len(np.unique(speakers)) > 1 else np.arange(len(labels))
        groups = np.tile(by, len(views))
        if channel_views:
            xs, y, groups = self._with_channel_rows(xs, y, groups, channel_views, speakers, by)
        self.labels_ = labels_
        self.selected_ = {}
        # CORAL moves target rows to the distribution the classifier was fitted on: for per-speaker
        # normalisation that is the speaker-standardised training rows, not the single-utterance ones
        self.source_stats_ = [
            domain_stats(np.concatenate([x[v * n : (v + 1) * n] for x in xs], axis=1)) for v in range(len(views))
        ]
        self.domain_map_, self.voices_ = None, None
        cw, w = self.class_weight, None
        if cw == "balanced-corpus":
            cw = None
            # one weight per clip, repeated for each of its rows (speed views, then channel views)
            copies = len(views) + len(channel_views or [])
            w = np.tile(balanced_corpus_weights(labels, corpora if corpora is not None else ["-"] * n), copies)
        if self.classifier == "stacking":
            self._fit_stacking(xs, y, groups, cw, w)
        else:
            x = np.concatenate(xs, axis=1)
            grid = self.grid if self.grid is not None else _DEFAULT_GRIDS[self.classifier]
            params, score = _select(self.classifier, grid, x, y, groups, cw, self.inner_folds, self.seed, w)
            self.selected_ = {"params": params, "inner_ua": score}
            if self._decision_calibrated():
                self.temperature_ = _fit_temperature(
                    self.classifier, params, x, y, groups, cw, self.inner_folds, self.seed, len(labels_), w
                )
                self.selected_["temperature"] = self.temperature_
            probability = not self._decision_calibrated()
            self.estimators_ = [
                _fit_weighted(_make_estimator(self.classifier, params, cw, self.seed, probability), x, y, w)
            ]
        return self

    def _recolour(self, xs, views, speakers, target_views, shrink_to: str) -> list[np.ndarray]:
        """Per view, the fitted rows mapped onto the target's single-utterance mean and covariance."""
        from ..domain import apply_map, coral_map

        nb, n = len(views[0]), len(speakers)
        widths = np.cumsum([x.shape[1] for x in xs])[:-1]
        out = [[] for _ in range(nb)]
        for v, rows_t in enumerate(self._domain_rows(target_views)):
            rows_s = np.concatenate([x[v * n : (v + 1) * n] for x in xs], axis=1)
            a, b = coral_map(
                domain_stats(rows_s), domain_stats(rows_t, shrink_to=shrink_to), direction="source-to-target"
            )
            for j, part in enumerate(np.split(apply_map(rows_s, a, b), widths, axis=1)):
                out[j].append(part)
        return [np.concatenate(parts) for parts in out]

    def _channel_blocks(self, utterances, progress) -> list[list[np.ndarray]]:
        """Per channel view, one [n, d_b] block per feature set of the degraded clips (speed 1): a view
        per condition (``channel_copies: each``) or one view whose clips each went through the
        condition drawn for them (``one``, :meth:`channel_draw`)."""
        from ..features import extract
        from ..features.base import ChannelView

        babble = []
        if "noise" in self.channels:
            rng = np.random.default_rng(self.seed)
            pick = rng.choice(len(utterances), size=min(8, len(utterances)), replace=False)
            babble = [utterances[int(i)] for i in sorted(pick)]

        def blocks(condition, clips):
            return [
                extract(
                    ChannelView(e, condition, self.seed, babble=babble if condition == "noise" else ()),
                    clips,
                    progress=progress,
                )
                for e in self._extractors()
            ]

        if self.channel_copies == "each":
            return [blocks(c, utterances) for c in self.channels]
        drawn = self.channel_draw(utterances)
        out = [None] * len(self._extractors())
        for c in self.channels:
            idx = np.flatnonzero(drawn == c)
            if not len(idx):
                continue
            for b, rows in enumerate(blocks(c, [utterances[int(i)] for i in idx])):
                if out[b] is None:
                    out[b] = np.zeros((len(utterances), rows.shape[1]), np.float32)
                out[b][idx] = rows
        return [out]

    def channel_draw(self, utterances) -> np.ndarray:
        """The condition each clip's single degraded copy goes through under ``channel_copies: one``:
        drawn uniformly from ``channels`` by a generator seeded with ``seed`` and the clip's file
        name and segment (not its folder, so a moved corpus draws the same)."""
        import zlib

        names = []
        for u in utterances:
            key = zlib.crc32(f"{Path(u.path).name}-{u.start}-{u.end}".encode())
            names.append(self.channels[int(np.random.default_rng([self.seed, key]).integers(len(self.channels)))])
        return np.array(names, dtype=object)

    def _with_channel_rows(self, xs, y, groups, channel_views, speakers, by):
        """``xs``, ``y``, ``groups`` with every channel view's rows appended: each view standardised on
        its own (per speaker within the view for ``speaker``), falling back to the clean view's global
        statistics; labels and inner-CV groups those of the view's clips."""
        nb = len(xs)
        clean = self.speeds.index(1.0) if 1.0 in self.speeds else 0
        n = len(speakers)
        extra = [[self._normalise(view[b], clean * nb + b, speakers) for b in range(nb)] for view in channel_views]
        xs = [np.concatenate([x] + [rows[b] for rows in extra]) for b, x in enumerate(xs)]
        y = np.concatenate([y] + [y[:n]] * len(channel_views))
        groups = np.concatenate([groups] + [np.asarray(by)] * len(channel_views))
        return xs, y, groups

    def _decision_calibrated(self) -> bool:
        return self.calibration == "decision" and self.classifier.startswith("svm")

    def _fit_stacking(self, xs, y, groups, cw, w):
        from sklearn.linear_model import LogisticRegression

        folds = _inner_folds(y, groups, self.inner_folds, self.seed)
        grid = _DEFAULT_GRIDS[self.base]
        n_labels = len(self.labels_)
        oof = np.zeros((len(y), n_labels * len(xs)))
        self.estimators_ = []
        params_all = []
        for b, x in enumerate(xs):
            params, score = _select(self.base, grid, x, y, groups, cw, self.inner_folds, self.seed, w)
            params_all.append({"params": params, "inner_ua": score})
            for tr, va in folds:
                est = _make_estimator(self.base, params, cw, self.seed, True)
                est = _fit_weighted(est, x[tr], y[tr], None if w is None else w[tr])
                oof[np.ix_(va, range(b * n_labels, (b + 1) * n_labels))] = _aligned_proba(est, x[va], n_labels)
            self.estimators_.append(_fit_weighted(_make_estimator(self.base, params, cw, self.seed, True), x, y, w))
        meta = LogisticRegression(C=1.0, class_weight=cw, max_iter=2000, random_state=self.seed)
        self.estimators_.append(_fit_weighted(meta, oof, y, w))
        self.selected_ = {"base": params_all}

    # -- predicting -------------------------------------------------------------------------------
    def _proba_from_views(self, views, speakers, voice=None, *, refine: bool = True, mix=None) -> np.ndarray:
        """Probabilities from every view's blocks: the geometric mean over the views.

        ``voice``: each row's voice group (a ``voices``-adapted model, single-utterance
        predictions); ``refine=False`` leaves the self-trained head out; ``mix``: each row's
        estimated class probabilities, for speaker statistics given the speaker's emotion mix."""
        self._check_fitted()
        if len(views) == 1:
            return self._proba_from_blocks(views[0], 0, speakers, voice, refine, mix)
        logs = [
            np.log(np.maximum(self._proba_from_blocks(blocks, v, speakers, voice, refine, mix), 1e-12))
            for v, blocks in enumerate(views)
        ]
        return _softmax(np.mean(logs, axis=0))

    def _standardised(self, blocks, view: int, speakers, voice=None, mix=None) -> list[np.ndarray]:
        """Per feature set, the rows the classifier sees: per speaker (``speakers``; given each row's
        estimated emotion ``mix`` if one is passed), per voice group (``voice``, single utterance of a
        ``voices``-adapted model) or with the training statistics (through the CORAL map of a
        ``coral``-adapted model)."""
        nb = len(blocks)
        if speakers is None and voice is not None:
            vs = self.voices_
            return [
                (np.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0) - vs["mean"][view * nb + i][voice])
                / vs["std"][view * nb + i][voice]
                for i, b in enumerate(blocks)
            ]
        xs = [self._normalise(b, view * nb + i, speakers, mix) for i, b in enumerate(blocks)]
        if getattr(self, "domain_map_", None) is not None and (speakers is None or self.normalisation != "speaker"):
            a, b = self.domain_map_[view]
            x = np.concatenate(xs, axis=1) @ a + b
            xs = np.split(x, np.cumsum([blk.shape[1] for blk in xs])[:-1], axis=1)
        return xs

    def _proba_from_blocks(self, blocks, view: int, speakers, voice=None, refine: bool = True, mix=None) -> np.ndarray:
        xs = self._standardised(blocks, view, speakers, voice, mix)
        p = self._proba_from_rows(xs)
        head = self.voices_["heads"][view] if speakers is None and voice is not None else None
        return head.refine(p, np.concatenate(xs, axis=1)) if head is not None and refine else p

    def _proba_from_rows(self, xs) -> np.ndarray:
        n_labels = len(self.labels_)
        if self.classifier == "stacking":
            z = np.concatenate([_aligned_proba(est, x, n_labels) for est, x in zip(self.estimators_[:-1], xs)], axis=1)
            return _aligned_proba(self.estimators_[-1], z, n_labels)
        x = np.concatenate(xs, axis=1)
        if self._decision_calibrated():
            return _softmax(_decision(self.estimators_[0], x, n_labels) / self.temperature_)
        return _aligned_proba(self.estimators_[0], x, n_labels)

    def _predict_signals(self, signals, speakers) -> np.ndarray:
        if len(signals) == 0:
            return np.zeros((0, len(self.labels_)))
        voice = self._voice_of(signals=signals) if speakers is None else None
        return self._proba_from_views(self._blocks_from_signals(signals), speakers, voice)

    def _predict_utterances(self, utterances, speakers, *, progress: bool) -> np.ndarray:
        voice = self._voice_of(utterances=utterances, progress=progress) if speakers is None else None
        return self._proba_from_views(self._blocks_from_utterances(utterances, progress), speakers, voice)

    def _predict_signals_both(self, signals, speakers):
        """Single-utterance and adapted probabilities from one feature extraction (the robust rule).

        The adapted ones standardise each speaker given its emotion mix as the single-utterance
        probabilities estimate it (:func:`serkit.speakers.speaker_stats`), so a speaker whose clips
        are all angry is not standardised as if they spanned the emotions of a training speaker."""
        if len(signals) == 0:
            empty = np.zeros((0, len(self.labels_)))
            return empty, empty
        return self._both(self._blocks_from_signals(signals), self._voice_of(signals=signals), speakers)

    def _predict_utterances_both(self, utterances, speakers, *, progress: bool):
        views = self._blocks_from_utterances(utterances, progress)
        return self._both(views, self._voice_of(utterances=utterances, progress=progress), speakers)

    def _both(self, views, voice, speakers):
        single = self._proba_from_views(views, None, voice)
        return single, self._proba_from_views(views, speakers, mix=single)

    # -- voice groups -----------------------------------------------------------------------------
    @property
    def single_utterance_mode(self) -> str:  # type: ignore[override]
        return "voices" if getattr(self, "voices_", None) is not None else "none"

    def _voice_embeddings(self, *, utterances=None, signals=None, progress: bool = False) -> np.ndarray:
        """[n, 256] GE2E speaker-encoder vectors of utterances (through the feature cache) or signals."""
        from ..features import extract, get_extractor

        name, options = _VOICE_FEATURES
        e = get_extractor(name, **options)
        if utterances is not None:
            return extract(e, list(utterances), progress=progress)
        return self._signal_rows(e, list(signals))

    def _voice_of(self, **inputs) -> np.ndarray | None:
        """Each clip's voice group, for a ``voices``-adapted model (else ``None``)."""
        if getattr(self, "voices_", None) is None:
            return None
        return nearest_voice(self._voice_embeddings(**inputs), self.voices_["centroids"])

    def adapt_voices(
        self,
        target,
        *,
        groups: int = VOICE_GROUPS,
        self_train: bool = True,
        fraction: float = SELF_TRAIN_FRACTION,
        c: float = SELF_TRAIN_C,
        progress: bool = True,
    ) -> FeatureClassifier:
        """Adapt to unlabelled ``target`` utterances whose speakers are unknown; returns ``self``.

        The clips are clustered into (at most) ``groups`` voice groups by their GE2E speaker
        embeddings (:func:`serkit.speakers.voice_groups`); each group's features are standardised
        with the group's own statistics, as a speaker's are (:func:`serkit.speakers.group_stats`);
        with ``self_train`` a head fitted on the target's confidently predicted rows
        (:func:`serkit.domain.fit_target_head`) refines every single-utterance prediction. Replaces
        a CORAL map. Needs ``normalisation: speaker`` (the classifier was fitted on rows standardised
        per speaker, which is what a group's rows become).
        """
        self._check_fitted()
        if self.normalisation != "speaker":
            raise ConfigError(
                f"voices adapts a model trained with normalisation: speaker; this one has {self.normalisation!r} "
                "(use --adapt-method coral)"
            )
        target = list(target)
        views = self._blocks_from_utterances(target, progress)
        embeddings = self._voice_embeddings(utterances=target, progress=progress)
        return self._adapt_voice_rows(views, embeddings, groups, self_train=self_train, fraction=fraction, c=c)

    def _adapt_voice_rows(self, views, embeddings, groups: int, *, self_train: bool, fraction: float, c: float):
        """:meth:`adapt_voices` on the target's feature blocks and voice embeddings."""
        from ..domain import fit_target_head

        voice, centroids = voice_groups(embeddings, groups, min_utterances=self.min_speaker_utterances)
        k, nb = len(centroids), len(self.features)
        means, stds = [], []
        for v, view in enumerate(views):
            for b, block in enumerate(view):
                i = v * nb + b
                m, sd = group_stats(
                    np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0),
                    voice,
                    k,
                    self.global_mean_[i],
                    self.global_std_[i],
                    floor=FEATURE_STD_FLOOR,
                )
                means.append(m)
                stds.append(sd)
        self.domain_map_ = None
        self.voices_ = {"centroids": centroids, "mean": means, "std": stds, "heads": [None] * len(views)}
        self.voices_["sizes"] = np.bincount(voice, minlength=k).tolist()
        if self_train:
            for v, blocks in enumerate(views):
                xs = self._standardised(blocks, v, None, voice)
                self.voices_["heads"][v] = fit_target_head(
                    np.concatenate(xs, axis=1), self._proba_from_rows(xs), fraction=fraction, c=c
                )
        return self

    # -- domain adaptation ------------------------------------------------------------------------
    @property
    def domain_methods(self) -> tuple[str, ...]:
        return ("voices", "coral") if self.normalisation == "speaker" else ("coral",)

    def domain_features(self, utterances, *, progress: bool = True) -> list[np.ndarray]:
        """Per speed view, the single-utterance-space rows [shape=(n, d)] of ``utterances`` (no labels read)."""
        self._check_fitted()
        return self._domain_rows(self._blocks_from_utterances(list(utterances), progress))

    def _domain_rows(self, views) -> list[np.ndarray]:
        """Per view, the single-utterance-space rows: blocks standardised with training statistics, concatenated."""
        nb = len(views[0])
        return [
            np.concatenate([self._normalise(view[b], v * nb + b, None) for b in range(nb)], axis=1)
            for v, view in enumerate(views)
        ]

    def set_domain(self, *, source_stats: list | None = None, maps: list | None = None) -> FeatureClassifier:
        """Replace the stored source statistics and/or the CORAL maps (one per speed view); returns ``self``."""
        n = len(self.speeds)
        for name, value in (("source statistics", source_stats), ("maps", maps)):
            if value is not None and len(value) != n:
                raise ConfigError(f"got {len(value)} {name} for a model with {n} speed view(s)")
        if source_stats is not None:
            self.source_stats_ = list(source_stats)
        if maps is not None:
            self.domain_map_ = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in maps]
            self.voices_ = None
        return self

    # -- embedding (few-shot prototypes) -----------------------------------------------------------
    @property
    def has_embedding(self) -> bool:  # type: ignore[override]
        """The single-utterance feature row the classifier sees (:meth:`embed_utterances`)."""
        return True

    def embed_utterances(self, utterances, *, progress: bool = True) -> np.ndarray:
        """[shape=(n, d)] float64: each clip's feature sets standardised with the training statistics and
        concatenated (the single-utterance space), through the CORAL map of a ``coral``-adapted model
        or with its voice group's statistics in a ``voices``-adapted one.

        With several speed views only the original one (speed 1, else the first) is used.
        """
        self._check_fitted()
        utterances = list(utterances)
        voice = self._voice_of(utterances=utterances, progress=progress)
        return self._embedding(self._blocks_from_utterances(utterances, progress), voice)

    def embed_signals(self, signals) -> np.ndarray:
        self._check_fitted()
        signals = list(signals)
        if not signals:
            return np.zeros((0, sum(len(m) for m in self.global_mean_[: len(self.features)])))
        return self._embedding(self._blocks_from_signals(signals), self._voice_of(signals=signals))

    def _embedding(self, views, voice=None) -> np.ndarray:
        view = self.speeds.index(1.0) if 1.0 in self.speeds else 0
        return np.concatenate(self._standardised(views[view], view, None, voice), axis=1).astype(np.float64)

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        cfg = {name: getattr(self, name) for name in sig.parameters if name != "self"}
        cfg["features"] = [_feature_spec(f)[0] if isinstance(f, str) else dict(f) for f in self.features]
        cfg["feature_configs"] = [e.full_config() for e in self._extractors()]
        if hasattr(self, "selected_"):
            cfg["selected"] = json.loads(json.dumps(self.selected_, default=float))
        if getattr(self, "onnx_", None):
            cfg["onnx"] = {k: v for k, v in self.onnx_.items() if k != "paths"}
        return cfg

    def save_weights(self, directory: Path) -> list[str]:
        import shutil

        import skops.io as sio

        self._check_fitted()
        directory = Path(directory)
        arrays = {}
        for i, (m, s) in enumerate(zip(self.global_mean_, self.global_std_)):
            arrays[f"global_mean_{i}"] = np.asarray(m, dtype=np.float64)
            arrays[f"global_std_{i}"] = np.asarray(s, dtype=np.float64)
        if self._decision_calibrated():
            arrays["temperature"] = np.array(self.temperature_, dtype=np.float64)
        for i, (m, v) in enumerate(getattr(self, "class_stats_", None) or []):
            arrays[f"class_mean_{i}"], arrays[f"class_var_{i}"] = m.astype(np.float32), v.astype(np.float32)
        np.savez(directory / "normalisation.npz", **arrays)
        files = ["normalisation.npz"]
        if not any(isinstance(e, OnnxEstimator) for e in self.estimators_):
            sio.dump(self.estimators_, directory / "estimators.skops")
            files.append("estimators.skops")
        for name, source in (getattr(self, "onnx_", None) or {}).get("paths", {}).items():
            shutil.copyfile(source, directory / name)  # the exported graphs travel with the model
            files.append(name)
        domain = {}
        for v, st in enumerate(getattr(self, "source_stats_", None) or []):
            domain[f"source_mean_{v}"] = st.mean.astype(np.float32)
            domain[f"source_cov_triu_{v}"] = st.cov[np.triu_indices(len(st.mean))].astype(np.float32)  # symmetric
            domain[f"source_n_{v}"] = np.array(st.n, dtype=np.int64)
            domain[f"source_shrinkage_{v}"] = np.array(st.shrinkage, dtype=np.float64)
        for v, (a, b) in enumerate(getattr(self, "domain_map_", None) or []):
            domain[f"map_a_{v}"] = np.asarray(a, np.float32)
            domain[f"map_b_{v}"] = np.asarray(b, np.float32)
        if domain:
            np.savez(directory / "domain.npz", **domain)
            files.append("domain.npz")
        vs = getattr(self, "voices_", None)
        if vs is not None:
            arrays = {"centroids": np.asarray(vs["centroids"], np.float32), "sizes": np.asarray(vs["sizes"], np.int64)}
            for i, (m, sd) in enumerate(zip(vs["mean"], vs["std"])):
                arrays[f"mean_{i}"], arrays[f"std_{i}"] = np.asarray(m, np.float64), np.asarray(sd, np.float64)
            for v, head in enumerate(vs["heads"]):
                if head is not None:
                    arrays[f"head_coef_{v}"] = head.coef.astype(np.float32)
                    arrays[f"head_intercept_{v}"] = head.intercept.astype(np.float64)
                    arrays[f"head_classes_{v}"] = head.classes.astype(np.int64)
            np.savez(directory / "voices.npz", **arrays)
            files.append("voices.npz")
        return files

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> FeatureClassifier:
        from ..artifact import load_npz, load_skops, model_file

        directory = Path(directory)
        sig = inspect.signature(cls.__init__)
        model = cls(**{k: v for k, v in config.items() if k in sig.parameters and k != "self"})
        norms = model_file(directory, "normalisation.npz")
        model.labels_ = list(labels)
        model.onnx_ = None
        if not _load_onnx_parts(model, directory, config.get("onnx")):
            model.estimators_ = load_skops(model_file(directory, "estimators.skops"))
        z = load_npz(norms)
        try:
            n = len(model.features) * len(model.speeds)
            model.global_mean_ = [z[f"global_mean_{i}"] for i in range(n)]
            model.global_std_ = [z[f"global_std_{i}"] for i in range(n)]
            if "temperature" in z:
                model.temperature_ = float(z["temperature"])
            # models saved before serkit kept class statistics adapt without an emotion mix
            model.class_stats_ = (
                [(z[f"class_mean_{i}"].astype(np.float64), z[f"class_var_{i}"].astype(np.float64)) for i in range(n)]
                if "class_mean_0" in z
                else None
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"cannot read the weights in '{directory}' ({exc}); re-train or re-copy the model"
            ) from None
        model.selected_ = config.get("selected", {})
        model.source_stats_, model.domain_map_ = None, None
        domain = model_file(directory, "domain.npz", required=False)
        if domain.exists():  # models saved before serkit kept domain statistics have none
            d = load_npz(domain)
            try:
                views = range(len(model.speeds))
                if "source_mean_0" in d:
                    model.source_stats_ = [
                        DomainStats(
                            mean=d[f"source_mean_{v}"].astype(np.float64),
                            cov=_source_cov(d, v),
                            n=int(d[f"source_n_{v}"]),
                            shrinkage=float(d[f"source_shrinkage_{v}"]),
                        )
                        for v in views
                    ]
                if "map_a_0" in d:
                    model.domain_map_ = [
                        (d[f"map_a_{v}"].astype(np.float64), d[f"map_b_{v}"].astype(np.float64)) for v in views
                    ]
            except (KeyError, ValueError, TypeError) as exc:
                raise ModelError(
                    f"cannot read the domain statistics in '{directory}' ({exc}); re-train or re-copy the model"
                ) from None
        model.voices_ = None
        voices = model_file(directory, "voices.npz", required=False)
        if voices.exists():
            d = load_npz(voices)
            try:
                n, views = len(model.features) * len(model.speeds), range(len(model.speeds))
                model.voices_ = {
                    "centroids": d["centroids"].astype(np.float64),
                    "sizes": d["sizes"].tolist(),
                    "mean": [d[f"mean_{i}"] for i in range(n)],
                    "std": [d[f"std_{i}"] for i in range(n)],
                    "heads": [
                        TargetHead(
                            coef=d[f"head_coef_{v}"].astype(np.float64),
                            intercept=d[f"head_intercept_{v}"],
                            classes=d[f"head_classes_{v}"],
                            n_labels=len(model.labels_),
                        )
                        if f"head_coef_{v}" in d
                        else None
                        for v in views
                    ],
                }
            except (KeyError, ValueError, TypeError) as exc:
                raise ModelError(
                    f"cannot read the voice groups in '{directory}' ({exc}); re-adapt or re-copy the model"
                ) from None
        return model


def _source_cov(d, v: int) -> np.ndarray:
    """View ``v``'s source covariance from ``domain.npz``: its upper triangle (or, as first written, the full matrix)."""
    if f"source_cov_{v}" in d:
        return d[f"source_cov_{v}"].astype(np.float64)
    tri = d[f"source_cov_triu_{v}"].astype(np.float64)
    n = int(round((np.sqrt(8 * tri.size + 1) - 1) / 2))
    if n * (n + 1) // 2 != tri.size:
        raise ValueError(f"source_cov_triu_{v} has {tri.size} values, not the upper triangle of a square matrix")
    cov = np.zeros((n, n))
    cov[np.triu_indices(n)] = tri
    return cov + np.triu(cov, 1).T


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _decision(est, x: np.ndarray, n_labels: int) -> np.ndarray:
    """One-vs-rest decision values [shape=(n, n_labels)] (argmax = the SVM's prediction)."""
    d = est.decision_function(x)
    classes = np.asarray(est.classes_ if hasattr(est, "classes_") else est[-1].classes_, dtype=int)
    if d.ndim == 1:  # two classes: one signed margin
        d = np.stack([-d, d], axis=1) / 2
    out = np.full((len(x), n_labels), -1e3)
    out[:, classes] = d
    return out


def _fit_temperature(kind, params, x, y, groups, class_weight, k, seed, n_labels, w=None) -> float:
    """Softmax temperature minimising the log-loss of inner-CV out-of-fold decision values."""
    from scipy.optimize import minimize_scalar

    scores, truth = [], []
    for tr, va in _inner_folds(y, groups, k, seed):
        if len(np.unique(y[tr])) < 2:
            continue
        est = _make_estimator(kind, params, class_weight, seed, probability=False)
        est = _fit_weighted(est, x[tr], y[tr], None if w is None else w[tr])
        scores.append(_decision(est, x[va], n_labels))
        truth.append(y[va])
    if not scores:
        return 1.0
    z, t = np.concatenate(scores), np.concatenate(truth)

    def nll(log_temp):
        p = _softmax(z / np.exp(log_temp))
        return -np.mean(np.log(np.maximum(p[np.arange(len(t)), t], 1e-12)))

    return float(np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x))


def _aligned_proba(est, x: np.ndarray, n_labels: int) -> np.ndarray:
    """``predict_proba`` with one column per label index, even when a fold missed a class."""
    p = est.predict_proba(x)
    classes = est.classes_ if hasattr(est, "classes_") else est[-1].classes_
    if len(classes) == n_labels:
        return p
    out = np.zeros((len(x), n_labels))
    out[:, np.asarray(classes, dtype=int)] = p
    return out


class OnnxEstimator:
    """A fitted scikit-learn classifier exported to ONNX (skl2onnx, float64), run by onnxruntime:
    what :meth:`FeatureClassifier._proba_from_rows` needs of an estimator (``classes_`` and the one
    output the export checked, ``predict_proba`` or ``decision_function``), without scikit-learn.
    :meth:`open` opens its session (the loader does, so a damaged file fails at load), one per process."""

    def __init__(self, path, classes, output: str):
        self.path, self.classes_, self.output = str(path), np.asarray(classes, dtype=np.int64), output
        self._session = None

    def open(self) -> OnnxEstimator:
        """Open the session now (a damaged file is then a :class:`ModelError` at load time)."""
        if self._session is None:
            from ..runtime import onnx_session

            self._session = onnx_session(self.path)
        return self

    def _run(self, x: np.ndarray) -> np.ndarray:
        self.open()
        name = self._session.get_inputs()[0].name
        return np.asarray(self._session.run(["probabilities"], {name: np.asarray(x, dtype=np.float64)})[0])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.output != "predict_proba":
            raise ModelError(f"'{self.path}' holds decision values, not probabilities; re-export the model")
        return self._run(x)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        if self.output != "decision_function":
            raise ModelError(f"'{self.path}' holds probabilities, not decision values; re-export the model")
        return self._run(x)

    def __getstate__(self):  # sessions do not pickle; worker processes open their own
        return {**self.__dict__, "_session": None}


def _onnx_runtime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _load_onnx_parts(model: FeatureClassifier, directory: Path, spec: dict | None) -> bool:
    """Give ``model`` the exported graphs of its folder (``config.onnx``, written by
    :func:`serkit.deploy.export.export_features`): the classifier as an :class:`OnnxEstimator` and each
    GE2E feature set's network (:meth:`serkit.features.ge2e.GE2EExtractor.use_onnx`). Returns
    whether it did: not without the section, nor without onnxruntime when the folder also holds the
    scikit-learn classifier (which then predicts, the same to float rounding)."""
    from ..artifact import model_file

    if not spec:
        return False
    if not _onnx_runtime_available():
        if model_file(directory, "estimators.skops", required=False).exists():
            return False
        raise ModelError(
            f"the model in '{directory}' is an ONNX export and needs onnxruntime (a serkit dependency): pip install onnxruntime"
        )
    try:
        classifier = spec["classifier"]
        paths = {classifier["file"]: model_file(directory, classifier["file"])}
        model.estimators_ = [
            OnnxEstimator(paths[classifier["file"]], classifier["classes"], classifier["output"]).open()
        ]
        extractors = model._extractors()
        for index, name in spec.get("networks", {}).items():
            paths[name] = model_file(directory, name)
            extractors[int(index)].use_onnx(paths[name])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ModelError(
            f"cannot read the ONNX parts listed in '{directory}/model.json' ({exc}); re-export the model"
        ) from None
    model.onnx_ = {**spec, "paths": {k: str(v) for k, v in paths.items()}}
    return True

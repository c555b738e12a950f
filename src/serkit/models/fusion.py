"""Fusion of whole models: late fusion / stacking of member classifiers' probabilities.

Any serkit classifiers can be members — feature SVMs, SoundNet, CNN-LSTM, ssl — each trained on the
same utterances. Their probabilities are combined by weights learned **on the training speakers
only**: every member is also fitted ``inner_folds`` times on speaker-grouped folds of the training
set, and the combiner learns from those out-of-fold probabilities (never from predictions on audio
the member was trained on, which would trust over-fitted members most).

Early fusion (one classifier on concatenated feature sets: ComParE ‖ SoundNet ‖ librosa …) is the
``features`` family with several ``features``; a fusion member can be such a model.

Recipe ``model`` section::

    model:
      family: fusion
      members:                       # recipe names, {recipe: NAME, set: {key: value}}, or model sections
        - compare-svm
        - {recipe: librosa-svm, set: {model.grid: {C: [0.001]}}}
        - {family: features, features: [egemaps], classifier: svm-linear}
      combine: stacking              # stacking | weighted | mean
      inner_folds: 3

``stacking`` fits a multinomial logistic regression on the members' out-of-fold log-probabilities;
``weighted`` learns one non-negative weight per member (a weighted product of experts, fitted by
log-loss); ``mean`` averages log-probabilities with equal weights and needs no inner folds.

Per-speaker adaptation (``adapt=True``) passes through to the members. Out-of-fold probabilities are computed in both
modes (adapted and single-utterance) and a combiner is learned for each, so a single clip is scored
with weights learned on single clips. ``centre_speakers: true`` adapts the fused scores as well: a
speaker's fused log-probabilities have their mean over that speaker's clips subtracted, which
removes a bias of the whole voice towards one class (a voice that sounds sad in every clip) — the
same assumption as per-speaker standardisation, that a speaker's clips span several emotions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from ..speakers import centre_speakers as _centre_speakers
from .base import Classifier, build_model, register_model

__all__ = ["FusionClassifier", "COMBINERS"]

COMBINERS = ("stacking", "weighted", "mean")
MODES = ("speaker", "none")  # adapted, single utterance
_EPS = 1e-6


def resolve_member(spec) -> tuple[str, dict]:
    """A member spec → (display name, model section).

    ``"compare-svm"`` and ``{"recipe": "compare-svm", "set": {...}}`` name shipped recipes (or YAML
    paths); a mapping with ``family`` is a model section itself.
    """
    from ..recipe import load_recipe

    if isinstance(spec, str):
        return spec, load_recipe(spec).model
    if isinstance(spec, dict) and "recipe" in spec:
        unknown = set(spec) - {"recipe", "set", "name"}
        if unknown:
            raise ConfigError(f"fusion member {spec!r}: unknown keys {sorted(unknown)}; use recipe, set, name")
        sets = spec.get("set") or {}
        if not isinstance(sets, dict):
            raise ConfigError(
                f"fusion member {spec['recipe']!r}: 'set' must map keys to values, e.g. {{model.grid: {{C: [0.001]}}}}"
            )
        recipe = load_recipe(spec["recipe"], [f"{k}={json.dumps(v)}" for k, v in sets.items()])
        return str(spec.get("name", spec["recipe"])), recipe.model
    if isinstance(spec, dict) and "family" in spec:
        section = {k: v for k, v in spec.items() if k != "name"}
        return str(spec.get("name", section["family"])), section
    raise ConfigError(
        f"fusion member {spec!r} is neither a recipe name, {{recipe: NAME}}, nor a model section with 'family'"
    )


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, _EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_weights(logps: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative member weights minimising the log-loss of ``softmax(sum_m w_m log p_m)``.

    ``logps``: [members, n, classes]. Weights start equal (1 each) and are fitted by L-BFGS-B.
    """
    from scipy.optimize import minimize

    idx = np.arange(len(y))

    def loss(w):
        z = np.tensordot(w, logps, axes=1)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        p = np.exp(z - lse[:, None])
        nll = float(np.mean(lse - z[idx, y]))
        # gradient: d nll / d w_m = mean_i (E_p[logp_m] - logp_m[y_i])
        grad = np.einsum("ic,mic->m", p, logps) / len(y) - logps[:, idx, y].mean(axis=1)
        return nll, grad

    res = minimize(loss, np.ones(logps.shape[0]), jac=True, method="L-BFGS-B", bounds=[(0.0, 20.0)] * logps.shape[0])
    return np.asarray(res.x, dtype=np.float64)


@register_model("fusion")
class FusionClassifier(Classifier):
    """Late fusion of member classifiers, combined with weights learned on training speakers.

    Parameters
    ----------
    members
        Two or more member specs: recipe names, ``{recipe: NAME, set: {KEY: VALUE}}``, or model
        sections (``{family: ..., ...}``); see the module docstring.
    combine
        ``"stacking"`` (logistic regression on out-of-fold log-probabilities, default),
        ``"weighted"`` (one non-negative weight per member) or ``"mean"`` (equal weights).
    inner_folds
        Speaker-grouped folds of the training set that give the out-of-fold probabilities.
    meta_c
        Inverse regularisation of the stacking logistic regression.
    centre_speakers
        In adapted prediction, subtract from each fused log-probability its mean over the clips of
        the same speaker (speakers with at least ``serkit.speakers.MIN_SPEAKER_UTTERANCES`` clips; others as they are).
    seed
        Seed of the inner folds and the combiner.

    Attributes
    ----------
    members_ : list of Classifier
        The members, each fitted on the whole training set.
    combiners_ : dict
        Per mode (``"speaker"``: adapted, ``"none"``: single utterance) the learned combiner:
        ``{"weights": [m]}`` or ``{"coef": [c, m*c], "intercept": [c]}``.
    """

    def __init__(
        self,
        members: Sequence = (),
        *,
        combine: str = "stacking",
        inner_folds: int = 3,
        meta_c: float = 1.0,
        centre_speakers: bool = False,
        seed: int = 0,
    ):
        self.members = list(members)
        self.combine = combine
        self.inner_folds = int(inner_folds)
        self.meta_c = float(meta_c)
        if not isinstance(centre_speakers, (bool, np.bool_)):
            raise ConfigError(f"fusion centre_speakers must be true or false, got {centre_speakers!r}")
        self.centre_speakers = bool(centre_speakers)
        self.seed = int(seed)
        if combine not in COMBINERS:
            raise ConfigError(f"unknown fusion combine {combine!r}; use one of {', '.join(COMBINERS)}")
        if len(self.members) < 2:
            raise ConfigError("fusion needs at least two members, e.g. members: [compare-svm, librosa-svm]")
        if self.inner_folds < 2 and combine != "mean":
            raise ConfigError(
                f"inner_folds must be at least 2 to learn fusion weights (got {inner_folds}); or combine: mean"
            )
        self._resolved = [resolve_member(m) for m in self.members]
        self._unfitted = self._build_members()  # bad member options fail now, not after hours of training

    def _build_members(self) -> list[Classifier]:
        return [build_model(section) for _, section in self._resolved]

    @property
    def member_names(self) -> list[str]:
        return [name for name, _ in self._resolved]

    @property
    def sampling_rate(self) -> int:  # type: ignore[override]
        models = getattr(self, "members_", None) or self._unfitted
        return max(int(m.sampling_rate) for m in models)

    # -- declared capabilities ------------------------------------------------------------------
    @property
    def normalisation(self) -> str:  # type: ignore[override]
        """The members' normalisation when they all share one, else ``"mixed"``."""
        models = getattr(self, "members_", None) or self._unfitted
        kinds = {m.normalisation for m in models}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def adapts_to_speakers(self) -> bool:  # type: ignore[override]
        """A member adapts, or the fused scores are centred per speaker (``centre_speakers``)."""
        models = getattr(self, "members_", None) or self._unfitted
        return self.centre_speakers or any(m.adapts_to_speakers for m in models)

    # -- learning ---------------------------------------------------------------------------------
    def fit(self, utterances: Sequence, *, progress: bool = True) -> FusionClassifier:
        from .features import _inner_folds

        utterances = list(utterances)
        labels = sorted({str(u.label) for u in utterances})
        if len(labels) < 2:
            raise ConfigError(f"training data has a single label {labels}; a classifier needs at least two")
        y = np.array([labels.index(str(u.label)) for u in utterances])
        groups = np.array([str(u.speaker) for u in utterances])
        oof = {mode: np.full((len(self.members), len(y), len(labels)), np.log(1.0 / len(labels))) for mode in MODES}
        if self.combine != "mean":
            for tr, va in _inner_folds(y, groups, self.inner_folds, self.seed):
                train = [utterances[i] for i in tr]
                if len({str(u.label) for u in train}) < 2:
                    continue
                held = [utterances[i] for i in va]
                for m, model in enumerate(self._build_members()):
                    model = model.fit(train, progress=progress) or model
                    for mode in MODES:
                        p = model.predict_proba_utterances(held, adapt=(mode == "speaker"), progress=progress)
                        oof[mode][m][np.ix_(va, [labels.index(lab) for lab in model.labels])] = _log(np.asarray(p))
        self.members_ = []
        for model in self._build_members():
            model = model.fit(utterances, progress=progress) or model
            if list(model.labels) != labels:
                raise ModelError(
                    f"fusion member {type(model).__name__} learned labels {model.labels}, expected {labels}"
                )
            self.members_.append(model)
        self.labels_ = labels
        self.combiners_ = {mode: self._fit_combiner(oof[mode], y) for mode in MODES}
        return self

    def _fit_combiner(self, logps: np.ndarray, y: np.ndarray) -> dict:
        if self.combine == "mean":
            return {"weights": [1.0 / len(logps)] * len(logps)}
        if self.combine == "weighted":
            return {"weights": _fit_weights(logps, y).tolist()}
        from sklearn.linear_model import LogisticRegression

        x = np.concatenate(list(logps), axis=1)
        lr = LogisticRegression(C=self.meta_c, class_weight="balanced", max_iter=5000, random_state=self.seed).fit(x, y)
        w, b = lr.coef_, lr.intercept_
        if len(lr.classes_) == 2:  # sklearn's binary form, one row for the positive class: as a softmax
            w, b = np.vstack([-w[0], w[0]]) / 2, np.array([-b[0], b[0]]) / 2
        coef = np.zeros((len(self.labels_), x.shape[1]))
        intercept = np.zeros(len(self.labels_))
        coef[lr.classes_], intercept[lr.classes_] = w, b
        if len(lr.classes_) < len(self.labels_):  # a class no inner fold predicted: never chosen
            missing = np.setdiff1d(np.arange(len(self.labels_)), lr.classes_)
            intercept[missing] = -1e3
        return {"coef": coef.tolist(), "intercept": intercept.tolist()}

    # -- predicting -------------------------------------------------------------------------------
    def _combine(self, logps: np.ndarray, mode: str, speakers=None) -> np.ndarray:
        c = self.combiners_[mode]
        if "weights" in c:
            z = np.tensordot(np.asarray(c["weights"]), logps, axes=1)
        else:
            x = np.concatenate(list(logps), axis=1)
            z = x @ np.asarray(c["coef"]).T + np.asarray(c["intercept"])
        if self.centre_speakers and mode == "speaker" and speakers is not None:
            z = _centre_speakers(z, speakers)
        return _softmax(z)

    def _member_logps(self, probs: list[np.ndarray]) -> np.ndarray:
        out = []
        for model, p in zip(self.members_, probs):
            order = [list(model.labels).index(lab) for lab in self.labels_]
            out.append(_log(np.asarray(p)[:, order]))
        return np.stack(out)

    def _predict_signals(self, signals: list[np.ndarray], speakers: list[str] | None) -> np.ndarray:
        """Signals at ``sampling_rate`` (resampled for members that want another rate)."""
        from ..audio import resample

        if len(signals) == 0:
            return np.zeros((0, len(self.labels_)))
        mode = "none" if speakers is None else "speaker"
        probs = []
        for model in self.members_:
            sigs = (
                signals
                if model.sampling_rate == self.sampling_rate
                else [resample(np.asarray(s, np.float32), self.sampling_rate, model.sampling_rate) for s in signals]
            )
            probs.append(model.predict_proba(sigs, speakers=speakers, adapt=mode == "speaker"))
        return self._combine(self._member_logps(probs), mode, speakers)

    def _predict_utterances(self, utterances: list, speakers: list[str] | None, *, progress: bool) -> np.ndarray:
        mode = "none" if speakers is None else "speaker"
        probs = [
            m.predict_proba_utterances(utterances, adapt=mode == "speaker", progress=progress) for m in self.members_
        ]
        return self._combine(self._member_logps(probs), mode, speakers)

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict:
        cfg = {
            "members": [dict(section, name=name) for name, section in self._resolved],
            "combine": self.combine,
            "inner_folds": self.inner_folds,
            "meta_c": self.meta_c,
            "centre_speakers": self.centre_speakers,
            "seed": self.seed,
        }
        if hasattr(self, "combiners_"):
            cfg["combiners"] = self.combiners_
        return cfg

    def save_weights(self, directory: Path) -> list[str]:
        """Each member in ``member-K/``, a model directory of its own; the combiners are in the config."""
        from ..artifact import write_model

        self._check_fitted()
        files = []
        for k, model in enumerate(self.members_):
            sub = Path(directory) / f"member-{k}"
            sub.mkdir()
            files += [f"member-{k}/{name}" for name in write_model(model, sub)]
        return files

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> FusionClassifier:
        from ..artifact import model_file
        from . import load_model

        if "combiners" not in config:
            raise ModelError(f"'{directory}/model.json' lacks the fusion combiners; re-train or re-copy the model")
        options = {k: config[k] for k in ("combine", "inner_folds", "meta_c", "centre_speakers", "seed") if k in config}
        model = cls(config.get("members", []), **options)
        model.members_ = [
            load_model(model_file(directory, f"member-{k}", kind="dir"))[0] for k in range(len(model.members))
        ]
        model.combiners_ = config["combiners"]
        model.labels_ = list(labels)
        return model

"""The ``Classifier`` contract every model family implements, and the family registry.

A classifier is built from a recipe's ``model`` section, fitted on utterances (it reads their audio
itself, through the feature cache), and predicts class probabilities for signals or utterances.
Artifacts (``serkit.artifact``) call :meth:`Classifier.save_weights` / :meth:`Classifier.from_weights`.

What a model can do is declared, never sniffed: :attr:`~Classifier.adapts_to_speakers`,
:attr:`~Classifier.normalisation`, :attr:`~Classifier.exportable`, :attr:`~Classifier.prunable`,
:attr:`~Classifier.has_embedding`, :attr:`~Classifier.domain_methods`. Evaluation, export, compression and benchmarks read these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._registry import Registry
from ..errors import ConfigError, NotFittedError

__all__ = ["Classifier", "NORMALISATIONS", "MODELS", "register_model", "build_model"]

#: values of :attr:`Classifier.normalisation`
NORMALISATIONS = ("speaker", "global", "none", "mixed")


class Classifier(ABC):
    """The contract of every model family.

    Estimator manners: ``__init__`` stores its arguments; ``fit`` returns ``self``; learned state
    ends in ``_``; predicting before fitting raises :class:`NotFittedError`.

    **Adaptation means the same in every family.** ``adapt=True``: per-speaker adaptation — the
    utterances of each speaker are normalised with that speaker's own statistics (from the given
    signals of that speaker, see :mod:`serkit.speakers`). ``adapt=False``: training statistics only,
    each utterance on its own (what a single clip gets). ``adapt=None`` (the default) follows the
    model's own setting: adapt exactly when :attr:`adapts_to_speakers` is true (and, for
    :meth:`predict_proba`, ``speakers`` is given). A model that does not adapt
    (``adapts_to_speakers`` false) predicts the same for both values. How ``adapt=True`` predicts is
    the model's :attr:`adapt_rule`: ``full`` (as above) or ``robust`` (each speaker's adapted and
    single-utterance probabilities mixed by how one-sided its clips look, so adapting is never much
    worse than not adapting; a family that keeps its training classes' statistics, the feature
    models, adapts a speaker there given the emotion mix its single clips predict; :meth:`set_adapt_rule`).

    A family implements :meth:`fit` and :meth:`_predict_signals` (and, where it has a faster path
    through its caches, :meth:`_predict_utterances`); the public :meth:`predict_proba` and
    :meth:`predict_proba_utterances` resolve ``adapt`` once, here, for every family.
    """

    family: str = ""
    sampling_rate: int = 16000

    # -- declared capabilities ----------------------------------------------------------------
    @property
    def normalisation(self) -> str:
        """How the model normalises its representation: ``"speaker"`` (per-speaker standardisation),
        ``"global"`` (training-set statistics), ``"none"``, or ``"mixed"`` (members differ)."""
        return "none"

    @property
    def adapts_to_speakers(self) -> bool:
        """Whether ``adapt=True`` can change predictions (the model uses a speaker's own statistics)."""
        return self.normalisation == "speaker"

    @property
    def exportable(self) -> bool:
        """Whether ``serkit export`` can turn this model into an ONNX graph."""
        return False

    @property
    def prunable(self) -> bool:
        """Whether ``serkit compress --prune`` can remove channels from this model's network."""
        return False

    @property
    def domain_methods(self) -> tuple[str, ...]:
        """Unsupervised domain-adaptation methods :mod:`serkit.adaptation` can apply: ``"coral"`` (feature
        models, after or while training), ``"adabn"`` (networks with batch norm, after training),
        ``"deep-coral"`` / ``"mmd"`` (networks, while training); none by default."""
        return ()

    @property
    def has_embedding(self) -> bool:
        """Whether the model maps a signal to a fixed-size embedding (``embed``)."""
        return False

    @property
    def pretrainable(self) -> bool:
        """Whether ``serkit pretrain`` can pretrain this family's backbone without labels and
        ``model.init`` load the result (``pretrain_network``, ``architecture``)."""
        return False

    @property
    def data_parallel(self) -> bool:
        """Whether ``fit`` trains data-parallel inside a ``torch.distributed`` process group
        (``serkit train --nproc N``): the network families; feature models fit once, in one process."""
        return False

    # -- embedding (for few-shot prototypes) ----------------------------------------------------
    def embed_utterances(self, utterances: Sequence, *, progress: bool = True) -> np.ndarray:
        """[shape=(n, d)] float64 embedding of each utterance on its own (no per-speaker statistics).

        The space class prototypes live in (``serkit enrol``): for feature models the standardised
        feature row the classifier sees, for networks the pooled vector before the output layer.
        Available when :attr:`has_embedding` is true.
        """
        raise ConfigError(self._no_embedding())

    def embed_signals(self, signals: Sequence[np.ndarray]) -> np.ndarray:
        """[shape=(n, d)] like :meth:`embed_utterances`, for float32 mono signals at :attr:`sampling_rate`."""
        raise ConfigError(self._no_embedding())

    def _no_embedding(self) -> str:
        family = self.family or type(self).__name__
        return f"model family {family!r} has no embedding to build prototypes in; use a family that has one"

    # -- learning -----------------------------------------------------------------------------
    @abstractmethod
    def fit(self, utterances: Sequence, *, progress: bool = True) -> Classifier:
        """Learn from labelled utterances; returns ``self``."""

    def fit_target(self, utterances: Sequence, target: Sequence, *, method: str, progress: bool = True) -> Classifier:
        """Learn from labelled ``utterances`` adapted to unlabelled ``target`` utterances (train-time
        domain adaptation, :mod:`serkit.adaptation`); families that declare a train-time method in
        :attr:`domain_methods` implement it."""
        family = self.family or type(self).__name__
        raise ConfigError(f"model family {family!r} has no train-time domain adaptation ({method})")

    # -- predicting ---------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        self._check_fitted()
        return list(self.labels_)

    def predict_proba(
        self, signals: Sequence[np.ndarray], *, speakers: Sequence[str] | None = None, adapt: bool | None = None
    ) -> np.ndarray:
        """[shape=(n, n_labels)] probabilities for float32 mono signals at ``sampling_rate``.

        Parameters
        ----------
        signals : sequence of ndarray
            Mono signals at :attr:`sampling_rate`.
        speakers : sequence of str, optional
            One speaker id per signal; needed for per-speaker adaptation (a speaker's statistics
            come from its signals in this call).
        adapt : bool, optional
            See the class docstring; ``None`` adapts when the model adapts to speakers and
            ``speakers`` is given. ``True`` without ``speakers`` is an error.
        """
        self._check_fitted()
        signals = list(signals)
        speakers = self._adaptation_speakers(speakers, adapt, len(signals))
        if not signals:  # nothing to predict: no family is asked to standardise an empty batch
            return np.zeros((0, len(self.labels_)))
        if speakers is None or self.adapt_rule == "full":
            return self._calibrated(self._predict_signals(signals, speakers), speakers)
        return self._robust(*self._predict_signals_both(signals, speakers), speakers)

    def predict_proba_utterances(
        self, utterances: Sequence, *, adapt: bool | None = None, progress: bool = True
    ) -> np.ndarray:
        """[shape=(n, n_labels)] probabilities for utterances (audio read through the family's caches).

        ``adapt`` — see the class docstring; the speakers are the utterances' own. ``None``: the
        model's own setting (:attr:`adapts_to_speakers`).
        """
        self._check_fitted()
        utterances = list(utterances)
        speakers = self._adaptation_speakers([str(u.speaker) for u in utterances], adapt, len(utterances))
        if not utterances:
            return np.zeros((0, len(self.labels_)))
        if speakers is None or self.adapt_rule == "full":
            return self._calibrated(self._predict_utterances(utterances, speakers, progress=progress), speakers)
        return self._robust(*self._predict_utterances_both(utterances, speakers, progress=progress), speakers)

    def predict(self, signals: Sequence[np.ndarray], **kw) -> list[str]:
        p = self.predict_proba(signals, **kw)
        return [self.labels_[i] for i in p.argmax(axis=1)]

    @abstractmethod
    def _predict_signals(self, signals: list[np.ndarray], speakers: list[str] | None) -> np.ndarray:
        """Probabilities for signals; ``speakers`` is ``None`` for no adaptation, else one id per signal."""

    def _predict_utterances(self, utterances: list, speakers: list[str] | None, *, progress: bool) -> np.ndarray:
        """Probabilities for utterances; by default reads their audio and calls :meth:`_predict_signals`."""
        from ..audio import read

        signals = [read(u.path, self.sampling_rate, start=u.start, end=u.end)[0] for u in utterances]
        return self._predict_signals(signals, speakers)

    def _predict_signals_both(self, signals: list[np.ndarray], speakers: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(single-utterance, adapted)`` probabilities of signals, for the robust rule; by default two
        calls of :meth:`_predict_signals` (a family that can share the work, or adapt given the emotion
        mix the single-utterance ones estimate, overrides it)."""
        return self._predict_signals(signals, None), self._predict_signals(signals, speakers)

    def _predict_utterances_both(
        self, utterances: list, speakers: list[str], *, progress: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(single-utterance, adapted)`` probabilities of utterances, as :meth:`_predict_signals_both`."""
        return (
            self._predict_utterances(utterances, None, progress=progress),
            self._predict_utterances(utterances, speakers, progress=progress),
        )

    # -- the adaptation rule ----------------------------------------------------------------------
    @property
    def adapt_rule(self) -> str:
        """How ``adapt=True`` predicts (:data:`serkit.speakers.ADAPT_RULES`): ``"full"`` — every speaker
        standardised with its own statistics (a model without the setting: as before); ``"robust"`` —
        per speaker, the adapted probabilities mixed with the single-utterance ones, the more
        single-utterance the more one-sided the speaker's clips look
        (:func:`serkit.speakers.robust_mix`), so a speaker whose clips all show one emotion does not
        have it standardised away. See :meth:`set_adapt_rule`."""
        return self.adapt_rule_settings["rule"]

    @property
    def adapt_rule_settings(self) -> dict:
        """The rule and its thresholds, as ``model.json`` records them (``speaker_adaptation``)."""
        return dict(getattr(self, "adapt_rule_", None) or {"rule": "full"})

    def set_adapt_rule(self, rule: str = "full", *, low: float | None = None, high: float | None = None) -> Classifier:
        """Choose how ``adapt=True`` predicts: ``"full"`` or ``"robust"`` (thresholds ``low``/``high`` on
        :func:`serkit.speakers.one_sidedness`, default :data:`serkit.speakers.ROBUST_ADAPTATION`).

        Read from a recipe's ``model.adapt_rule`` (:func:`build_model`) and from ``model.json``'s
        ``speaker_adaptation`` (:func:`serkit.models.load_model`); a folder without it is ``full``.
        Single-utterance predictions (``adapt=False``) are unchanged. Returns ``self``.
        """
        from ..speakers import ADAPT_RULES, ROBUST_ADAPTATION

        if rule not in ADAPT_RULES:
            raise ConfigError(f"unknown adapt_rule {rule!r}; use one of {', '.join(ADAPT_RULES)}")
        if rule == "full":
            if low is not None or high is not None:
                raise ConfigError("adapt_rule 'full' takes no thresholds; low/high belong to 'robust'")
            self.adapt_rule_ = {"rule": "full"}
            return self
        low = ROBUST_ADAPTATION["low"] if low is None else low
        high = ROBUST_ADAPTATION["high"] if high is None else high
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"adapt_rule robust: {name} must be a number in [0, 1], got {value!r}")
        if not high > low:
            raise ConfigError(f"adapt_rule robust needs low < high; got low={low}, high={high}")
        self.adapt_rule_ = {"rule": "robust", "low": float(low), "high": float(high)}
        return self

    def _robust(self, single: np.ndarray, adapted: np.ndarray, speakers: list[str]) -> np.ndarray:
        """The robust rule: the uncalibrated single-utterance and adapted probabilities mixed per speaker
        (weights from the single-utterance ones, so calibrating a model does not change which speakers
        it adapts: the thresholds were chosen on uncalibrated models), then the ``speaker`` temperature.
        That temperature calibrates what ``adapt=True`` returns, whatever the rule: it is fitted on those
        outputs (:func:`serkit.evaluation.run.fit_temperatures`) and applied to them."""
        from ..speakers import robust_mix

        settings = self.adapt_rule_settings
        # every speaker is tested; one under the family's minimum is not adapted, so its weight is moot
        mixed = robust_mix(single, adapted, speakers, low=settings["low"], high=settings["high"], min_utterances=1)
        return self._calibrated(mixed, speakers)

    # -- calibration ----------------------------------------------------------------------------
    @property
    def temperatures(self) -> dict[str, float]:
        """Temperature per mode (``"speaker"`` adapted, ``"none"`` single utterance, ``"voices"`` single
        utterance of a model adapted by voice groups) applied to every
        prediction; empty when the model is not calibrated (see :meth:`set_temperatures`)."""
        return dict(getattr(self, "temperatures_", None) or {})

    def set_temperatures(self, temperatures: dict[str, float] | None) -> Classifier:
        """Calibrate the model's probabilities: ``softmax(log p / T[mode])`` from now on (``None``: off).

        This is the one place temperature scaling is applied (:mod:`serkit.calibration`): both public
        predict methods go through it, for every family. :func:`serkit.models.load_model` sets it from
        ``model.json``'s ``calibration``; ``serkit train --calibrate`` fits it. A mode without a
        temperature is left as it is. Returns ``self``.
        """
        from ..calibration import apply_temperature

        clean = {}
        for mode, t in (temperatures or {}).items():
            if mode not in ("speaker", "none", "voices"):
                raise ConfigError(f"calibration mode {mode!r} is not one of 'speaker', 'none', 'voices'")
            apply_temperature(np.ones((1, 2)) / 2, t)  # the one check of T's value
            clean[mode] = float(t)
        self.temperatures_ = clean
        return self

    @property
    def single_utterance_mode(self) -> str:
        """The temperature mode of a single-utterance prediction (``adapt=False``): ``"none"``, or
        ``"voices"`` for a feature model adapted by voice groups
        (:meth:`serkit.models.features.FeatureClassifier.adapt_voices`), whose temperature is fitted on
        inner folds adapted the same way (``serkit train --calibrate``)."""
        return "none"

    def _calibrated(self, proba, speakers) -> np.ndarray:
        mode = "speaker" if speakers is not None else self.single_utterance_mode
        temps = getattr(self, "temperatures_", None) or {}
        # a model calibrated before the voices mode existed: its single-utterance temperature
        t = temps.get(mode, temps.get("none") if mode == "voices" else None)
        if t is None or t == 1.0:
            return proba
        from ..calibration import apply_temperature

        return apply_temperature(proba, t)

    def _adaptation_speakers(self, speakers, adapt: bool | None, n: int) -> list[str] | None:
        """The one rule for ``adapt``: the speakers to adapt with, or ``None`` for no adaptation."""
        if adapt is not None and not isinstance(adapt, (bool, np.bool_)):
            raise ConfigError(f"adapt must be True, False or None, got {adapt!r}")
        if adapt is None:
            adapt = self.adapts_to_speakers and speakers is not None
        if not adapt:
            return None
        if speakers is None:
            raise ConfigError(
                "adapt=True needs the speakers: pass speakers=[one id per signal] (a speaker's statistics come "
                "from its own signals), or adapt=False for single-utterance predictions"
            )
        speakers = [str(s) for s in speakers]
        if len(speakers) != n:
            raise ConfigError(f"got {len(speakers)} speakers for {n} signals; pass one speaker id per signal")
        return speakers if self.adapts_to_speakers else None

    # -- persistence --------------------------------------------------------------------------
    def config(self) -> dict:
        """JSON-able description for ``model.json`` (enough, with the weights, to rebuild the model)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    def save_weights(self, directory: Path) -> list[str]:
        """Write learned state into ``directory`` (no pickle); return the file names written."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> Classifier:
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    # -- helpers ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(utterances) or load a trained model "
                "with serkit.Recognizer.load(model_dir)"
            )


#: family name → Classifier subclass
MODELS: Registry[type] = Registry(
    "model family",
    plugins=("serkit.models", ("features", "neural", "spectro", "onnx", "ssl", "fusion", "prototype", "protonet")),
)


def register_model(name: str):
    def deco(cls):
        cls.family = name
        return MODELS.register(name)(cls)

    return deco


def build_model(section: dict) -> Classifier:
    """Build an unfitted classifier from a recipe's ``model`` section (``{"family": ..., **options}``).

    ``adapt_rule`` (``full`` | ``robust``, or ``{rule: robust, low: L, high: H}``) is the contract's
    own setting (:meth:`Classifier.set_adapt_rule`), taken out before the family is built."""
    options = dict(section)
    family = options.pop("family", None)
    if family is None:
        from ..errors import ConfigError

        raise ConfigError(f"recipe model section needs a 'family'; known: {', '.join(MODELS.names())}")
    rule = options.pop("adapt_rule", None)  # the Classifier contract's setting, not a family's option
    model = MODELS.get(family)(**options)
    if rule is not None:
        if isinstance(rule, dict):
            model.set_adapt_rule(**rule)
        else:
            model.set_adapt_rule(rule)
    return model

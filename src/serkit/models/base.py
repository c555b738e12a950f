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
    (``adapts_to_speakers`` false) predicts the same for both values.

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
        return self._calibrated(self._predict_signals(signals, speakers), speakers)

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
        return self._calibrated(self._predict_utterances(utterances, speakers, progress=progress), speakers)

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
    """Build an unfitted classifier from a recipe's ``model`` section (``{"family": ..., **options}``)."""
    options = dict(section)
    family = options.pop("family", None)
    if family is None:
        from ..errors import ConfigError

        raise ConfigError(f"recipe model section needs a 'family'; known: {', '.join(MODELS.names())}")
    return MODELS.get(family)(**options)

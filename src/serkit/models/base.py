"""The ``Classifier`` interface every model family implements, and the family registry.

A classifier is built from a recipe's ``model`` section, fitted on utterances (it reads their audio
itself, through the feature cache), and predicts class probabilities for signals or utterances.
Artifacts (``serkit.artifact``) call :meth:`Classifier.save_weights` / :meth:`Classifier.from_weights`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .._registry import Registry
from ..errors import NotFittedError

__all__ = ["Classifier", "MODELS", "register_model", "build_model"]


class Classifier:
    """Interface of every model family.

    Estimator manners: ``__init__`` stores its arguments; ``fit`` returns ``self``; learned state
    ends in ``_``; predicting before fitting raises :class:`NotFittedError`.
    """

    family: str = ""
    sampling_rate: int = 16000

    # -- learning -----------------------------------------------------------------------------
    def fit(self, utterances: Sequence, *, progress: bool = True) -> "Classifier":
        raise NotImplementedError

    # -- predicting ---------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        self._check_fitted()
        return list(self.labels_)

    def predict_proba(self, signals: Sequence[np.ndarray], *, speakers: Sequence[str] | None = None) -> np.ndarray:
        """[shape=(n, n_labels)] probabilities for float32 mono signals at ``sampling_rate``.

        ``speakers`` (one id per signal) enables per-speaker adaptation where the model supports it:
        the signals of each speaker are normalised with that speaker's own statistics.
        """
        raise NotImplementedError

    def predict_proba_utterances(
        self, utterances: Sequence, *, adapt: bool | None = None, progress: bool = True
    ) -> np.ndarray:
        """Probabilities for utterances (reads audio through the feature cache where the family has one).

        ``adapt`` — per-speaker adaptation from the utterances' speakers; ``None`` follows the model's
        normalisation setting.
        """
        from ..audio import read

        signals = [read(u.path, self.sampling_rate, start=u.start, end=u.end)[0] for u in utterances]
        speakers = [u.speaker for u in utterances] if adapt or adapt is None else None
        return self.predict_proba(signals, speakers=speakers)

    def predict(self, signals: Sequence[np.ndarray], **kw) -> list[str]:
        p = self.predict_proba(signals, **kw)
        return [self.labels_[i] for i in p.argmax(axis=1)]

    # -- persistence --------------------------------------------------------------------------
    def config(self) -> dict:
        """JSON-able description for ``model.json`` (enough, with the weights, to rebuild the model)."""
        raise NotImplementedError

    def save_weights(self, directory: Path) -> list[str]:
        """Write learned state into ``directory`` (no pickle); return the file names written."""
        raise NotImplementedError

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> "Classifier":
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(utterances) or load a trained model "
                "with serkit.Recognizer.load(model_dir)"
            )


#: family name → Classifier subclass
MODELS: Registry[type] = Registry("model family")


def register_model(name: str):
    def deco(cls):
        cls.family = name
        return MODELS.register(name)(cls)

    return deco


def build_model(section: dict) -> Classifier:
    """Build an unfitted classifier from a recipe's ``model`` section (``{"family": ..., **options}``)."""
    from . import _load_all

    _load_all()
    options = dict(section)
    family = options.pop("family", None)
    if family is None:
        from ..errors import ConfigError

        raise ConfigError(f"recipe model section needs a 'family'; known: {', '.join(MODELS.names())}")
    return MODELS.get(family)(**options)

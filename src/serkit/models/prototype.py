"""``prototype``: a base model enrolled on a few labelled clips of a new domain (``serkit enrol``).

The model holds its base classifier (saved inside the folder, ``base/``, a model folder of its
own, as fusion members are) and one prototype per support class (``prototypes.npz``: the mean of
the support clips' embeddings in the base's embedding space, and the support's per-dimension
within-class variance and standardised residuals that define the distance, see
:func:`serkit.prototypes.squared_distances`; float64, no pickle). It predicts
over the union of the base's labels and the support set's (:func:`serkit.prototypes.enrolled_proba`):
single-utterance base probabilities mixed with prototype probabilities, with the weight and scale
recorded in ``model.json``. It never adapts to speakers (the prototypes already sit in the new
domain; per-speaker statistics would move the clips away from them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from ..prototypes import ALPHA, SCALE, enrolled_proba, rule_temperature
from .base import Classifier, register_model

__all__ = ["PrototypeClassifier", "PROTOTYPES_FILE", "BASE_DIR"]

PROTOTYPES_FILE = "prototypes.npz"
BASE_DIR = "base"


@register_model("prototype")
class PrototypeClassifier(Classifier):
    """A fitted base classifier plus class prototypes in its embedding space.

    Parameters
    ----------
    alpha
        Weight of the base model's log-probabilities (:data:`serkit.prototypes.ALPHA`).
    scale
        Per-dimension scale of the squared distances (:data:`serkit.prototypes.SCALE`).
    temperature
        Softening of the mixed log-probabilities; ``None``: the rule's (:func:`serkit.prototypes.rule_temperature`,
        resolved when the prototypes are set).

    Attributes
    ----------
    base_ : Classifier
        The base model (``has_embedding``), predicting single utterances.
    classes_ : list of str
        The support classes, in the order of ``prototypes_``.
    prototypes_ : ndarray [shape=(n_classes, d)]
    labels_ : list of str
        The sorted union of the base's labels and ``classes_``.
    """

    def __init__(self, *, alpha: float = ALPHA, scale: float = SCALE, temperature: float | None = None):
        self.alpha = float(alpha)
        self.scale = float(scale)
        self.temperature = None if temperature is None else float(temperature)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"prototype alpha must be in [0, 1], got {alpha!r}")
        if not self.scale > 0 or not (self.temperature is None or self.temperature > 0):
            raise ConfigError(f"prototype scale and temperature must be positive, got {scale!r}, {temperature!r}")

    def set_prototypes(
        self, base: Classifier, classes, prototypes, *, variance=None, residuals=None, base_meta: dict | None = None
    ) -> PrototypeClassifier:
        """Make this the enrolment of ``base`` with these prototypes (and the support's per-dimension
        ``variance`` and standardised ``residuals``, :func:`serkit.prototypes.fit_prototypes`; ``None``:
        Euclidean); returns ``self``."""
        if not base.has_embedding:
            raise ConfigError(base._no_embedding())
        prototypes = np.asarray(prototypes, dtype=np.float64)
        classes = [str(c) for c in classes]
        if prototypes.ndim != 2 or len(prototypes) != len(classes) or not classes:
            raise ConfigError(f"got {prototypes.shape} prototypes for {len(classes)} classes")
        self.base_ = base
        self.base_meta_ = dict(base_meta or {})
        self.classes_ = classes
        self.prototypes_ = prototypes
        self.variance_ = None if variance is None else np.asarray(variance, dtype=np.float64)
        if self.variance_ is not None and self.variance_.shape != (prototypes.shape[1],):
            raise ConfigError(f"got a variance of shape {self.variance_.shape} for {prototypes.shape[1]}-d prototypes")
        self.residuals_ = None if residuals is None else np.asarray(residuals, dtype=np.float64)
        if self.residuals_ is not None and (
            self.variance_ is None or self.residuals_.shape[1:] != prototypes.shape[1:]
        ):
            raise ConfigError(f"got residuals of shape {self.residuals_.shape} for {prototypes.shape[1]}-d prototypes")
        self.labels_ = sorted(set(base.labels) | set(classes))
        if self.temperature is None:
            self.temperature = rule_temperature(self.variance_)
        return self

    # -- declared capabilities ------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:  # type: ignore[override]
        return int(self.base_.sampling_rate)

    @property
    def normalisation(self) -> str:  # type: ignore[override]
        return "none"

    @property
    def has_embedding(self) -> bool:  # type: ignore[override]
        return True

    def embed_utterances(self, utterances, *, progress: bool = True) -> np.ndarray:
        return self.base_.embed_utterances(utterances, progress=progress)

    def embed_signals(self, signals) -> np.ndarray:
        return self.base_.embed_signals(signals)

    # -- learning / predicting --------------------------------------------------------------------
    def fit(self, utterances, *, progress: bool = True):
        raise ConfigError(
            "a prototype model is made by enrolling a trained model on labelled clips: "
            "serkit enrol --model M --support SPEC --out M2 (serkit.api.enrol in Python)"
        )

    def _mix(self, base_proba, embeddings) -> np.ndarray:
        labels, p = enrolled_proba(
            base_proba, self.base_.labels, embeddings, self.prototypes_, self.classes_, alpha=self.alpha, scale=self.scale,
            temperature=self.temperature, variance=self.variance_, residuals=self.residuals_,
        )  # fmt: skip
        if labels != self.labels_:  # pragma: no cover - set_prototypes fixes the union
            raise ModelError(f"prototype labels {labels} differ from the model's {self.labels_}")
        return p

    def _predict_signals(self, signals, speakers) -> np.ndarray:
        if len(signals) == 0:
            return np.zeros((0, len(self.labels_)))
        base = self.base_.predict_proba(signals, adapt=False)
        return self._mix(base, self.base_.embed_signals(signals))

    def _predict_utterances(self, utterances, speakers, *, progress: bool) -> np.ndarray:
        if len(utterances) == 0:
            return np.zeros((0, len(self.labels_)))
        base = self.base_.predict_proba_utterances(utterances, adapt=False, progress=progress)
        return self._mix(base, self.base_.embed_utterances(utterances, progress=progress))

    # -- persistence ------------------------------------------------------------------------------
    def config(self) -> dict:
        cfg = {"alpha": self.alpha, "scale": self.scale, "temperature": self.temperature, "base": BASE_DIR}
        if hasattr(self, "classes_"):
            cfg["classes"] = list(self.classes_)
            cfg["base_family"] = self.base_.family
        return cfg

    def save_weights(self, directory: Path) -> list[str]:
        """The base model in ``base/`` (its own model folder) and ``prototypes.npz``."""
        from ..artifact import write_model

        self._check_fitted()
        directory = Path(directory)
        sub = directory / BASE_DIR
        sub.mkdir()
        meta = self.base_meta_
        standard = {"format_version", "serkit_version", "created", "family", "labels", "sampling_rate", "config"}
        standard |= {"recipe", "trained_on", "metrics", "files", "calibration"}
        extra = {k: v for k, v in meta.items() if k not in standard}
        if self.base_.temperatures:
            extra["calibration"] = {**(meta.get("calibration") or {}), "method": "temperature"}
            extra["calibration"]["temperature"] = self.base_.temperatures
        files = [
            f"{BASE_DIR}/{name}"
            for name in write_model(
                self.base_,
                sub,
                recipe=meta.get("recipe"),
                trained_on=meta.get("trained_on"),
                metrics=meta.get("metrics"),
                extra=extra,
            )
        ]
        arrays = {"prototypes": self.prototypes_, "classes": np.array(self.classes_, dtype=str)}
        if self.variance_ is not None:
            arrays["variance"] = self.variance_
        if self.residuals_ is not None:
            arrays["residuals"] = self.residuals_
        np.savez(directory / PROTOTYPES_FILE, **arrays)
        return [*files, PROTOTYPES_FILE]

    @classmethod
    def from_weights(cls, directory: Path, config: dict, labels: list[str]) -> PrototypeClassifier:
        from ..artifact import load_npz, model_file
        from . import load_model

        model = cls(
            alpha=config.get("alpha", ALPHA),
            scale=config.get("scale", SCALE),
            temperature=config.get("temperature"),
        )
        base, base_meta = load_model(model_file(directory, str(config.get("base", BASE_DIR)), kind="dir"))
        z = load_npz(model_file(directory, PROTOTYPES_FILE))
        try:
            prototypes, classes = z["prototypes"], [str(c) for c in z["classes"]]
        except KeyError as exc:
            raise ModelError(f"'{directory}/{PROTOTYPES_FILE}' lacks {exc}; re-enrol the model") from None
        model.set_prototypes(
            base, classes, prototypes, variance=z.get("variance"), residuals=z.get("residuals"), base_meta=base_meta
        )
        if list(labels) != model.labels_:
            raise ModelError(
                f"'{directory}/model.json' lists labels {list(labels)} but the base and prototypes give "
                f"{model.labels_}; re-enrol the model"
            )
        return model

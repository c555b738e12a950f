"""Model families behind one ``Classifier`` interface: feature classifiers (sklearn) and neural ones (torch)."""

from __future__ import annotations

from .base import MODELS, Classifier, build_model, register_model

__all__ = ["Classifier", "MODELS", "build_model", "register_model", "load_model"]


def load_model(directory):
    """Rebuild a fitted classifier from a model folder written by :func:`serkit.artifact.save_model`.

    Every file is read through :func:`serkit.artifact.model_file` (inside the folder only) and
    never executes code (see :mod:`serkit.artifact`).

    Returns
    -------
    classifier : serkit.models.Classifier
    metadata : dict
        The parsed ``model.json``.
    """
    from pathlib import Path

    from ..artifact import read_metadata
    from ..errors import ConfigError, ModelError

    meta = read_metadata(directory)
    cls = MODELS.get(meta["family"])
    model = cls.from_weights(Path(directory).expanduser(), meta["config"], meta["labels"])
    calibration = meta.get("calibration")
    if calibration:  # temperature scaling is applied by the Classifier contract (predict_proba*)
        if calibration.get("method") != "temperature" or not isinstance(calibration.get("temperature"), dict):
            raise ModelError(
                f"'{directory}' has a calibration this serkit cannot apply ({calibration.get('method')!r}); "
                "retrain with serkit train --calibrate or remove the 'calibration' field from model.json"
            )
        try:
            model.set_temperatures(calibration["temperature"])
        except ConfigError as exc:
            raise ModelError(f"'{directory}': model.json calibration is invalid ({exc})") from None
    rule = meta.get("speaker_adaptation")
    if rule is not None:  # how adapt=True predicts; a folder without it adapts fully, as it always did
        try:
            if not isinstance(rule, dict):
                raise ConfigError(f"expected a mapping like {{'rule': 'robust'}}, got {rule!r}")
            model.set_adapt_rule(**rule)
        except (ConfigError, TypeError) as exc:
            raise ModelError(f"'{directory}': model.json speaker_adaptation is invalid ({exc})") from None
    return model, meta

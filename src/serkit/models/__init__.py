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

    meta = read_metadata(directory)
    cls = MODELS.get(meta["family"])
    model = cls.from_weights(Path(directory).expanduser(), meta["config"], meta["labels"])
    return model, meta

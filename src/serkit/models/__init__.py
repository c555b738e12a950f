"""Model families behind one ``Classifier`` interface: feature classifiers (sklearn) and neural ones (torch)."""

from __future__ import annotations

from .base import MODELS, Classifier, build_model, register_model

__all__ = ["Classifier", "MODELS", "build_model", "register_model"]

_MODULES = ("features", "neural")


def _load_all() -> None:
    import importlib

    for m in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{m}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{m}":
                raise

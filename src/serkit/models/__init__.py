"""Model families behind one ``Classifier`` interface: feature classifiers (sklearn) and neural ones (torch)."""

from __future__ import annotations

from .base import MODELS, Classifier, build_model, register_model

__all__ = ["Classifier", "MODELS", "build_model", "register_model"]

_MODULES = ("features", "neural", "spectro", "onnx", "ssl", "fusion")


def _load_all() -> None:
    """Import the family modules so they register (each imports its heavy dependency lazily)."""
    from .._registry import import_plugins

    import_plugins(__name__, _MODULES)

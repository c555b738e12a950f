"""The serkit error hierarchy: every message names the bad value and says how to fix it."""

from __future__ import annotations

__all__ = ["SerkitError", "AudioError", "CorpusError", "ConfigError", "ModelError", "NotFittedError"]


class SerkitError(Exception):
    """Base class of every error serkit raises on purpose (the CLI prints these without a traceback)."""


class AudioError(SerkitError):
    """An audio file or signal cannot be used: missing, corrupt, empty, silent, absurd sample rate."""


class CorpusError(SerkitError):
    """A corpus folder or manifest is missing, empty or inconsistent."""


class ConfigError(SerkitError, ValueError):
    """A recipe, option or name is invalid (an unknown name lists the valid ones)."""


class ModelError(SerkitError):
    """A model artifact cannot be saved, loaded or used."""


class NotFittedError(ModelError):
    """A model was asked to predict before it was fitted."""

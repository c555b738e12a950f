"""serkit: speech emotion recognition — corpora, features, classic and neural models, honest
speaker-independent evaluation, and prediction.

The public API is what ``__all__`` lists; everything else lives in submodules.
"""

from __future__ import annotations

import os as _os

# Idle OpenMP threads that spin instead of sleeping stall torch 10-70x on a shared 2-core machine
# (measured with SoundNet); must be set before torch is first imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__
from .api import adapt, enrol, evaluate, pretrain, train
from .errors import AudioError, ConfigError, CorpusError, ModelError, NotFittedError, SerkitError
from .inference import Recognizer

__all__ = [
    "__version__",
    "Recognizer",
    "train",
    "evaluate",
    "adapt",
    "enrol",
    "pretrain",
    "load_corpus",
    "load_corpora",
    "load_recipe",
    "load_model",
    "save_model",
    "SerkitError",
    "AudioError",
    "CorpusError",
    "ConfigError",
    "ModelError",
    "NotFittedError",
]


def __getattr__(name):
    # Lazy re-exports keep `import serkit` fast (no librosa/sklearn import until used).
    if name in ("load_corpus", "load_corpora"):
        from . import corpora

        return getattr(corpora, name)
    if name == "load_recipe":
        from .recipe import load_recipe

        return load_recipe
    if name == "save_model":
        from . import artifact

        return artifact.save_model
    if name == "load_model":
        from . import models

        return models.load_model
    raise AttributeError(f"module 'serkit' has no attribute {name!r}")

"""Saving and loading trained models as versioned directories.

A model artifact is a directory holding ``model.json`` (format version, family, labels, sample
rate, recipe, model config, what it was trained on, its scores, serkit version) and the family's
weight files (safetensors for torch, skops/npz for scikit-learn). Loading never executes code from
the files. Saving is atomic: the directory is written beside the target and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import ModelError
from .jsonio import json_default

__all__ = ["FORMAT_VERSION", "save_model", "write_model", "load_model", "read_metadata"]

FORMAT_VERSION = 1


def save_model(classifier, directory, *, recipe: dict | None = None, trained_on: dict | None = None,
               metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``classifier`` to ``directory`` (replaced atomically if it exists).

    Returns the directory path.
    """
    classifier._check_fitted()
    directory = Path(directory).expanduser()
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        write_model(classifier, tmp, recipe=recipe, trained_on=trained_on, metrics=metrics, extra=extra)
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{directory.name}.", suffix=".old"))
            os.rmdir(old)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def write_model(classifier, directory, *, recipe: dict | None = None, trained_on: dict | None = None,
                metrics: dict | None = None, extra: dict | None = None) -> list[str]:
    """Weights and ``model.json`` of a fitted ``classifier`` into an existing, empty ``directory``.

    Not atomic by itself: :func:`save_model` calls it on a temporary directory, and a model made of
    models (``fusion``) calls it for each member inside its own. Returns the files written.
    """
    from . import __version__

    files = list(classifier.save_weights(directory))
    meta = {
        "format_version": FORMAT_VERSION,
        "serkit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "family": classifier.family,
        "labels": list(classifier.labels_),
        "sampling_rate": int(classifier.sampling_rate),
        "config": classifier.config(),
        "recipe": recipe or {},
        "trained_on": trained_on or {},
        "metrics": metrics or {},
        "files": files,
        **(extra or {}),
    }
    (Path(directory) / "model.json").write_text(json.dumps(meta, indent=2, default=json_default))
    return [*files, "model.json"]


def read_metadata(directory) -> dict:
    """The parsed ``model.json`` of an artifact directory (checked for format version)."""
    directory = Path(directory).expanduser()
    meta_path = directory / "model.json"
    if not directory.is_dir():
        raise ModelError(f"model directory '{directory}' does not exist; train one with `serkit train ... --out {directory}`")
    if not meta_path.exists():
        raise ModelError(f"'{directory}' is not a serkit model (no model.json); pass the folder `serkit train --out` wrote")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"'{meta_path}' is not valid JSON ({exc}); the model is damaged: re-train or re-copy it") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"'{directory}' has model format {version!r}; this serkit reads up to {FORMAT_VERSION}: upgrade serkit"
        )
    for key in ("family", "labels", "config"):
        if key not in meta:
            raise ModelError(f"'{meta_path}' lacks '{key}'; the model is damaged: re-train or re-copy it")
    return meta


def load_model(directory):
    """Rebuild a fitted classifier from an artifact directory.

    Returns
    -------
    classifier : serkit.models.Classifier
    metadata : dict
        The parsed ``model.json``.
    """
    from .models import MODELS, _load_all

    meta = read_metadata(directory)
    _load_all()
    cls = MODELS.get(meta["family"])
    model = cls.from_weights(Path(directory).expanduser(), meta["config"], meta["labels"])
    return model, meta

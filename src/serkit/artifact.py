"""Saving and loading trained models as versioned directories.

A model artifact is a directory holding ``model.json`` (format version, family, labels, sample
rate, recipe, model config, what it was trained on, its scores, serkit version) and the family's
weight files (safetensors for torch, skops/npz for scikit-learn, ONNX for exports). Loading never
executes code from the files:

- every file a model reads is opened through :func:`model_file`, which refuses absolute names, ``..``
  and links that leave the model folder;
- ``.skops`` files are read by :func:`load_skops`, which walks the file's schema and refuses any
  object that is not one of :data:`SKOPS_ALLOWED` (the exact scikit-learn estimators, numpy arrays and
  builtin containers serkit writes) and every function, method or reduce call, before skops builds
  anything;
- ``.npz`` files are read with ``allow_pickle=False`` and ``.safetensors`` files hold only tensors.

Loading a folder into a classifier is :func:`serkit.models.load_model` (it needs the model
registry, a layer above this one). Saving is atomic: the directory is written beside the target and
renamed into place; hidden
temporary folders a killed save left behind are removed by the next save to the same place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from .cache import plain_permissions
from .errors import ModelError
from .jsonio import json_default
from .runtime import process_alive

__all__ = [
    "FORMAT_VERSION",
    "SKOPS_ALLOWED",
    "save_model",
    "replace_directory",
    "write_model",
    "read_metadata",
    "model_file",
    "load_skops",
    "load_npz",
]

FORMAT_VERSION = 1

#: Every (skops loader, module, class) a ``.skops`` file serkit writes can hold — found by saving each
#: classifier serkit builds (svm-linear, svm-rbf, logreg, rf; probability on/off; class weights; the
#: stacking meta-learner) and listing the nodes of their schemas. Anything else is refused.
SKOPS_ALLOWED = frozenset(
    {
        # containers and JSON scalars (str, int, float, bool, None)
        ("ListNode", "builtins", "list"),
        ("TupleNode", "builtins", "tuple"),
        ("DictNode", "builtins", "dict"),
        *(("JsonNode", "builtins", t) for t in ("str", "int", "float", "bool", "NoneType")),
        *(("TypeNode", "builtins", t) for t in ("str", "int")),  # dict key types
        # arrays (read with np.load(allow_pickle=False)) and numeric numpy scalars
        *(
            ("NdArrayNode", "numpy", t)
            for t in (
                "ndarray",
                "float16",
                "float32",
                "float64",
                "int8",
                "int16",
                "int32",
                "int64",
                "uint8",
                "uint16",
                "uint32",
                "uint64",
                "bool_",
                "bool",
            )
        ),
        # the estimators
        ("ObjectNode", "sklearn.pipeline", "Pipeline"),
        ("ObjectNode", "sklearn.preprocessing._data", "StandardScaler"),
        ("ObjectNode", "sklearn.svm._classes", "SVC"),
        ("ObjectNode", "sklearn.linear_model._logistic", "LogisticRegression"),
        ("ObjectNode", "sklearn.ensemble._forest", "RandomForestClassifier"),
        ("ObjectNode", "sklearn.tree._classes", "DecisionTreeClassifier"),
        ("TreeNode", "sklearn.tree._tree", "Tree"),
    }
)

_TMP_SUFFIXES = (".tmp", ".old")


def save_model(
    classifier,
    directory,
    *,
    recipe: dict | None = None,
    trained_on: dict | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``classifier`` to ``directory`` (replaced atomically if it exists).

    Returns the directory path.
    """
    classifier._check_fitted()
    return replace_directory(
        directory,
        lambda tmp: write_model(classifier, tmp, recipe=recipe, trained_on=trained_on, metrics=metrics, extra=extra),
    )


def replace_directory(directory, write) -> Path:
    """Atomically (re)place ``directory`` with what ``write(tmp)`` puts into an empty temporary folder.

    The folder is written beside the target and renamed into place; an existing target is swapped
    out and removed, and a dead writer's temporaries are cleaned by the next call. Model folders
    (:func:`save_model`) and pretraining checkpoints (:mod:`serkit.training.pretrain`) are written
    this way. Returns the directory path.
    """
    directory = Path(directory).expanduser()
    parent = directory.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(parent, directory.name)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=_tmp_prefix(directory.name), suffix=".tmp"))
    try:
        plain_permissions(tmp, directory=True)  # mkdtemp's folder is owner-only
        write(tmp)
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=_tmp_prefix(directory.name), suffix=".old"))
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


def _tmp_prefix(name: str) -> str:
    # the saving process's id is in the name, so a later save can tell a dead save's leftovers from
    # a save still running in another process
    return f".{name}.{os.getpid()}-"


def _remove_stale_temporaries(parent: Path, name: str, *, min_age_s: float = 3600.0) -> None:
    """Delete ``.NAME.PID-XXXX.tmp``/``.old`` folders of saves whose process is gone (SIGKILL while
    saving), and unmarked ``.NAME.XXXX.tmp`` ones (older serkit) untouched for ``min_age_s``."""
    prefix = f".{name}."
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        rest = entry.name[len(prefix) :]
        if not entry.name.startswith(prefix) or not entry.name.endswith(_TMP_SUFFIXES):
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        pid, dash, _ = rest.partition("-")
        if dash and pid.isdigit():
            if process_alive(int(pid)):
                continue
        else:
            try:
                if time.time() - entry.stat().st_mtime < min_age_s:
                    continue
            except OSError:
                continue
        shutil.rmtree(entry, ignore_errors=True)


def write_model(
    classifier,
    directory,
    *,
    recipe: dict | None = None,
    trained_on: dict | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> list[str]:
    """Weights and ``model.json`` of a fitted ``classifier`` into an existing, empty ``directory``.

    Not atomic by itself: :func:`save_model` calls it on a temporary directory, and a model made of
    models (``fusion``) calls it for each member inside its own. Returns the files written.
    """
    from ._version import __version__

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
    if classifier.adapts_to_speakers:  # how adapt=True predicts (a folder without it: "full")
        meta["speaker_adaptation"] = classifier.adapt_rule_settings
    (Path(directory) / "model.json").write_text(json.dumps(meta, indent=2, default=json_default))
    return [*files, "model.json"]


def read_metadata(directory) -> dict:
    """The parsed ``model.json`` of an artifact directory (checked for format version)."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ModelError(
            f"model directory '{directory}' does not exist; train one with `serkit train ... --out {directory}`"
        )
    if not os.path.lexists(directory / "model.json"):
        raise ModelError(
            f"'{directory}' is not a serkit model (no model.json); pass the folder `serkit train --out` wrote"
        )
    meta_path = model_file(directory, "model.json")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"'{meta_path}' is not valid JSON ({exc}); the model is damaged: re-train or re-copy it"
        ) from None
    except OSError as exc:
        raise ModelError(f"cannot read '{meta_path}' ({exc.strerror or exc}); re-copy the model") from None
    if not isinstance(meta, dict):
        raise ModelError(
            f"'{meta_path}' holds a JSON {type(meta).__name__}, not an object; the model is damaged: re-train or re-copy it"
        )
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelError(
            f"the format_version field of '{meta_path}' is malformed ({version!r}; serkit writes a whole number "
            f"such as {FORMAT_VERSION}); the model is damaged: re-train or re-copy it"
        )
    if version > FORMAT_VERSION:
        raise ModelError(
            f"'{directory}' has model format {version!r}; this serkit reads up to {FORMAT_VERSION}: upgrade serkit"
        )
    for key in ("family", "labels", "config"):
        if key not in meta:
            raise ModelError(f"'{meta_path}' lacks '{key}'; the model is damaged: re-train or re-copy it")
    return meta


def model_file(directory, name: str, *, kind: str = "file", required: bool = True) -> Path:
    """The path of ``name`` inside the model folder ``directory``, checked to stay inside it.

    Every loader opens its files through this: ``name`` must be a relative path without ``..``, and
    the file it names — after following every symbolic link — must lie inside ``directory`` (itself
    resolved, so a model folder reached through a link is fine).

    Parameters
    ----------
    directory : path
        The model folder.
    name : str
        A file name from ``model.json`` or the family's own (``"estimators.skops"``, ``"member-0"``).
    kind : {"file", "dir"}
        What ``name`` must be when it exists.
    required : bool
        Raise when it does not exist (else return the path anyway).

    Returns
    -------
    pathlib.Path
        The resolved path.

    Raises
    ------
    ModelError
        ``name`` is absolute, climbs out with ``..``, or a link takes it outside the folder; or it
        is missing / of the wrong kind.
    """
    directory = Path(directory).expanduser()
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ModelError(f"'{directory}' names a model file {name!r}; the model is damaged: re-train or re-copy it")
    rel = Path(name)
    if rel.is_absolute() or name.startswith(("/", "\\")) or ".." in rel.parts or ".." in name.split("\\"):
        raise ModelError(
            f"'{directory}' names the file {name!r}, which is outside the model folder; serkit only reads files "
            "inside it: re-export or re-copy the model"
        )
    try:
        root = directory.resolve(strict=True)
        path = (root / rel).resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a link loop
        raise ModelError(f"cannot resolve '{directory / rel}' ({exc}); re-copy the model") from None
    if not path.is_relative_to(root):
        raise ModelError(
            f"'{directory / rel}' is a link to '{path}', outside the model folder; serkit only reads files inside "
            "it: replace the link with the file itself"
        )
    if path.exists():
        ok = path.is_file() if kind == "file" else path.is_dir()
        if not ok:
            raise ModelError(
                f"'{directory / rel}' is not a regular {'file' if kind == 'file' else 'folder'}; re-copy the model"
            )
    elif required:
        raise ModelError(f"'{directory}' lacks {name}; the model is incomplete: re-train or re-copy it")
    return path


def load_skops(path):
    """The object in a ``.skops`` file serkit wrote, built only if every node is in :data:`SKOPS_ALLOWED`.

    The check reads the file's ``schema.json`` itself instead of trusting skops's defaults (which
    trust every scikit-learn estimator, ``FunctionTransformer`` included, and numpy functions).

    Raises
    ------
    ModelError
        Not a skops file (a pickle, text, a truncated zip), or it holds a type serkit does not write
        (the message names it) — nothing from the file is constructed then.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (
        zipfile.BadZipFile,
        KeyError,
        json.JSONDecodeError,
        UnicodeDecodeError,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        raise ModelError(
            f"'{path}' is not a readable skops file ({type(exc).__name__}: {exc}); re-train or re-copy the model"
        ) from None
    found: set[tuple] = set()
    _skops_nodes(schema, found, 0)
    bad = sorted(found - SKOPS_ALLOWED, key=str)
    if bad:
        names = ", ".join(
            f"{mod}.{cls}" + ("" if loader in ("ObjectNode", "NdArrayNode", "JsonNode") else f" ({loader})")
            for loader, mod, cls in bad
        )
        raise ModelError(
            f"model file '{path}' contains types serkit does not load ({names}); serkit writes only "
            "scikit-learn SVC/LogisticRegression/RandomForest pipelines and arrays: the file was not written "
            "by serkit or was tampered with — do not use it"
        )
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
        allowed_names = {f"{mod}.{cls}" for _, mod, cls in SKOPS_ALLOWED}
        stray = [t for t in untrusted if t not in allowed_names]
        if stray:  # skops saw a type the schema walk did not: refuse rather than guess
            raise ModelError(
                f"model file '{path}' contains types serkit does not load ({', '.join(stray)}); do not use it"
            )
        return sio.load(path, trusted=untrusted)
    except ModelError:
        raise
    except Exception as exc:  # skops raises TypeError/ValueError/AttributeError on schemas it cannot build
        raise ModelError(f"cannot read '{path}' ({type(exc).__name__}: {exc}); re-train or re-copy the model") from None


def load_npz(path) -> dict:
    """The arrays of an ``.npz`` file (never unpickled), or one :class:`ModelError` when unreadable."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: z[k] for k in z.files}
    except Exception as exc:  # OSError, BadZipFile, ValueError (pickled data), EOFError
        raise ModelError(f"cannot read '{path}' ({type(exc).__name__}: {exc}); re-train or re-copy the model") from None


def _skops_nodes(node, found: set, depth: int) -> None:
    if depth > 200:
        raise ModelError("a skops schema nests deeper than serkit ever writes; the file is not a serkit model")
    if isinstance(node, dict):
        if "__loader__" in node:
            found.add((str(node.get("__loader__")), str(node.get("__module__")), str(node.get("__class__"))))
        for value in node.values():
            _skops_nodes(value, found, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _skops_nodes(value, found, depth + 1)

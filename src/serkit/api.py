"""The task-level API behind the CLI and the HTTP service: train, evaluate, pretrain, export, compress.

Each function takes corpora by spec (``"emodb:/data/emodb"``), a recipe by name or path, and
writes its outputs atomically. The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError

__all__ = ["train", "evaluate", "pretrain", "adapt", "enrol", "export", "compress", "prepare_data"]

#: ``serkit pretrain --backbone NAME``: the shipped recipe whose network (and ``pretrain:`` section) it uses
BACKBONE_RECIPES = {"soundnet-res": "soundnet-res", "cnn-lstm": "cnn-lstm", "soundnet8": "soundnet-finetune"}

#: ``--teacher NAME``: serkit backbones that serve as teachers (their embedding), with their extractor options
TEACHER_BACKBONES = {"ge2e": {"layer": "embedding"}, "soundnet": {"layer": "conv5", "pool": "mean,max", "slowdown": 3}}


def prepare_data(corpora: Sequence[str], label_set: str, *, check_audio: bool = True):
    """Load and label-map the utterances of one or more corpus specs ``NAME:ROOT``."""
    from .corpora import load_corpora

    if not corpora:
        raise ConfigError("no corpus given; pass --corpus NAME:ROOT, e.g. --corpus emodb:data/emodb")
    utterances = load_corpora(list(corpora), label_set=label_set, check_audio=check_audio)
    if not utterances:
        raise ConfigError(f"no utterances left after mapping onto label set {label_set!r}; check the label set")
    return utterances


def _trained_on(utterances, corpora) -> dict:
    labels: dict[str, int] = {}
    for u in utterances:
        labels[u.label] = labels.get(u.label, 0) + 1
    return {
        "corpora": list(corpora),
        "n_utterances": len(utterances),
        "n_speakers": len({u.speaker for u in utterances}),
        "labels": dict(sorted(labels.items())),
    }


def _engine(engine: str, address: str | None, workers: int | None):
    """The context the feature-cache step runs in: this machine's pool, or Ray tasks (``engine="ray"``)."""
    import contextlib

    if engine == "local":
        if address is not None or workers is not None:
            raise ConfigError("--address and --workers apply to --engine ray; add --engine ray or drop them")
        return contextlib.nullcontext()
    if engine == "ray":
        from .engines.ray_engine import ray_extraction

        return ray_extraction(address, workers)
    raise ConfigError(f"unknown engine {engine!r}; use local or ray")


def _with_engine(verb):
    """Adds ``engine="local" | "ray"``, ``address`` and ``workers`` to a verb: with ``"ray"`` its
    feature-cache step (openSMILE, librosa, GE2E, SoundNet features) runs as Ray tasks on a local Ray
    or the cluster at ``address`` (:func:`serkit.engines.ray_engine.ray_extraction`), writing the same
    cache; the rest of the verb runs here. Runtime options: never saved with a model."""
    import functools

    @functools.wraps(verb)
    def run(*args, engine: str = "local", address: str | None = None, workers: int | None = None, **kw):
        with _engine(engine, address, workers):
            return verb(*args, **kw)

    return run


@_with_engine
def evaluate(
    corpora: Sequence[str],
    recipe="compare-svm",
    *,
    protocol: str | None = None,
    out=None,
    overrides: list[str] | None = None,
    label_set: str | None = None,
    report_both: bool = True,
    allow_speaker_dependent: bool = False,
    progress: bool = True,
    calibrate: bool = False,
    adapt: str | None = None,
    target=None,
    adapt_method: str | None = None,
    episodes: int | None = None,
):
    """Evaluate a recipe on corpora under a (speaker-independent by default) protocol.

    ``calibrate``: temperature-scale each fold with temperatures fitted on its own training
    speakers only (:func:`serkit.evaluation.run.fit_temperatures`); the report keeps the
    uncalibrated numbers under ``calibration.before``.

    A protocol that lets a speaker appear in both training and test data (``random-split:K``)
    runs only with ``allow_speaker_dependent=True`` and is marked as such in the report.

    ``adapt="voices" | "coral" | "adabn"``: each fold's model is also adapted to its test set's unlabelled audio
    (:func:`serkit.adaptation.fold_adapter`) and scored as mode ``"domain"``; the report is marked
    transductive and keeps the unadapted modes (and headline). ``adapt="deep-coral" | "mmd" | "coral-train"``: train-time adaptation — per fold a
    second model is trained with the fold's test audio (labels unused) as its target
    (:func:`serkit.adaptation.fold_trainer`), scored as mode ``"domain"``, also transductive.
    :data:`serkit.adaptation.EVALUATE_METHODS` lists the spellings.

    ``target`` (files, folders, manifests or a corpus spec) with ``adapt_method`` (default: coral
    for feature models, deep-coral for networks): per fold a second model trained with this fixed
    unlabelled target (:func:`serkit.adaptation.target_trainer`), scored as mode ``"domain"``.

    ``protocol="fewshot:K"``: K-shot enrolment on each held-out corpus (or speaker) over ``episodes``
    episodes (default 10), against zero-shot and an SVM on the K shots (:mod:`serkit.evaluation.fewshot`).

    Returns the :class:`serkit.evaluation.Report`; with ``out`` also writes report.json,
    report.md, confusion.png and predictions.csv there.
    """
    from .corpora import UNKNOWN_SPEAKER
    from .evaluation import evaluate as run_protocol
    from .evaluation import parse_protocol
    from .models import build_model
    from .recipe import load_recipe

    r = load_recipe(recipe, overrides)
    proto = parse_protocol(protocol or r.protocol)
    if episodes is not None:
        from .evaluation.protocols import FewShot

        if not isinstance(proto, FewShot):
            raise ConfigError(f"--episodes applies to the fewshot:K protocol, not {proto.name!r}; drop it")
        proto = FewShot(proto.k, episodes=episodes, seed=proto.seed)
    if not proto.speaker_independent and not allow_speaker_dependent:
        raise ConfigError(
            f"protocol {proto.name!r} puts the same speakers in training and test data, which overstates "
            "accuracy on new speakers; pass --speaker-dependent (allow_speaker_dependent=True) to run it anyway"
        )
    utterances = prepare_data(corpora, label_set or r.label_set)
    unknown = sum(u.speaker == UNKNOWN_SPEAKER for u in utterances)
    if proto.speaker_independent and unknown:
        raise ConfigError(
            f"{unknown} of {len(utterances)} utterances have no speaker, so a speaker-independent protocol "
            "cannot keep them apart; give speakers (folder: speaker_pattern or one sub-folder per speaker; "
            "manifest: a speaker column), or use --protocol random-split:5 --speaker-dependent"
        )
    domain_adapt = domain_fit = None
    domain_method = adapt
    if adapt is not None and target is not None:
        raise ConfigError("--adapt adapts each fold to its own test audio and --target to a fixed target; choose one")
    if adapt is not None:
        from functools import partial

        from .adaptation import EVALUATE_METHODS, check_method, fold_adapter, fold_trainer

        if adapt not in EVALUATE_METHODS:
            raise ConfigError(f"unknown --adapt method {adapt!r}; valid: {', '.join(EVALUATE_METHODS)}")
        method, when = EVALUATE_METHODS[adapt]
        check_method(build_model(r.model), method, when=when)  # before any fold is fitted
        if when == "after":
            domain_adapt = partial(fold_adapter, method=method)
        else:
            domain_fit = partial(fold_trainer, method=method)
    elif target is not None:
        from functools import partial

        from .adaptation import target_trainer, training_target

        method, clips = training_target(build_model(r.model), target, adapt_method, label_set=label_set or r.label_set)
        domain_fit = partial(target_trainer, method=method, target=clips)
        domain_method = f"{method} (fixed target)"
    t0 = time.perf_counter()
    report = run_protocol(
        lambda: build_model(r.model),
        utterances,
        proto,
        report_both=report_both,
        progress=progress,
        domain_adapt=domain_adapt,
        domain_fit=domain_fit,
        domain_method=domain_method,
        calibrate=calibrate,
    )
    report.recipe = r.to_dict()  # normalisation stays the models' declared one (Classifier.normalisation)
    report.extra.setdefault("corpora", list(corpora))
    report.extra.setdefault("label_set", label_set or r.label_set)
    if target is not None:
        from .adaptation import target_info

        info = target_info(method, clips, target, when="train")
        report.extra["target"] = info
        tr = report.extra.get("transductive") or {}
        tr["note"] = (
            f"each fold's second model was trained with a fixed unlabelled target ({info['target']}); "
            "transductive only where that target holds test audio"
        )
        report.extra["transductive"] = tr
    report.seconds = time.perf_counter() - t0
    if out is not None:
        report.save(out)
    return report


def train(
    corpora: Sequence[str],
    recipe="compare-svm",
    *,
    out,
    overrides: list[str] | None = None,
    label_set: str | None = None,
    metrics: dict | None = None,
    progress: bool = True,
    calibrate: bool = False,
    target=None,
    adapt_method: str | None = None,
    nproc: int = 1,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> Path:
    """Train a recipe on all utterances of the corpora and save the model artifact to ``out``.

    ``target``: unlabelled audio of the domain the model will be used on (files, folders, CSV
    manifests or a corpus spec ``NAME:ROOT``), adapted to while training with ``adapt_method``
    (default: ``coral`` for feature models, ``deep-coral`` for networks; see
    :func:`serkit.adaptation.fit_with_target`); ``model.json`` records it under ``"adaptation"``.

    ``calibrate``: also fit one temperature per mode on out-of-fold predictions of held-out training
    speakers (held-out corpora when several are given; :func:`serkit.evaluation.run.fit_temperatures`)
    and save it as ``model.json``'s ``calibration``; the loaded model applies it to every prediction
    (:meth:`serkit.models.Classifier.set_temperatures`). This trains the recipe once per inner fold more.

    ``nproc``: data-parallel training of a network family (:attr:`Classifier.data_parallel`) on
    ``nproc`` processes (:mod:`serkit.training.distributed`): spawned on this machine with
    ``engine="local"``, or Ray Train workers on a local Ray or the cluster at ``address`` with
    ``engine="ray"`` (:mod:`serkit.engines.ray_train`). Rank 0 saves the model; ``model.json``
    records ``"distributed"``. With ``engine="ray"`` and ``nproc=1`` the feature-cache step runs as
    Ray tasks instead (``workers``: CPUs to plan for). Runtime options: never saved with a model.
    """
    options = dict(
        label_set=label_set,
        metrics=metrics,
        progress=progress,
        calibrate=calibrate,
        target=target,
        adapt_method=adapt_method,
    )
    if nproc == 1:
        with _engine(engine, address, workers):
            return _train_here(corpora, recipe, out=out, overrides=overrides, **options)
    from .recipe import load_recipe

    r = load_recipe(recipe, overrides)
    _check_data_parallel(r, nproc, engine, workers)
    if engine == "ray":
        from .engines.ray_train import train_data_parallel

        return train_data_parallel(nproc, _train_rank, (list(corpora), r, options), out=out, address=address)
    if address is not None:
        raise ConfigError("--address applies to --engine ray; add --engine ray or drop it")
    from .training.distributed import launch

    return Path(launch(nproc, _train_rank, (str(out), list(corpora), r, options)))


def _check_data_parallel(r, nproc: int, engine: str, workers: int | None) -> None:
    """``nproc`` > 1 needs a network family; more processes than cores only slows down."""
    import warnings

    from .models import MODELS, build_model

    if int(nproc) != nproc or nproc < 1:
        raise ConfigError(f"--nproc {nproc} must be a whole number >= 1")
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown engine {engine!r}; use local or ray")
    if workers is not None:
        raise ConfigError(
            "--workers plans the feature-cache step's CPUs; with --nproc N the processes are the workers, drop --workers"
        )
    model = build_model(r.model)
    if not model.data_parallel:
        families = sorted(n for n in MODELS.names() if MODELS.get(n).data_parallel.fget(None))  # a declared constant
        raise ConfigError(
            f"--nproc {nproc}: data-parallel training applies to the network families "
            f"({', '.join(families)}), not {model.family!r}, which fits in one process; drop --nproc "
            "(feature extraction uses every core already, or use --engine ray for it)"
        )
    if engine == "local":
        from .runtime import cpu_count

        if nproc > cpu_count():
            warnings.warn(
                f"--nproc {nproc} is more than this machine's {cpu_count()} cores: the processes will share "
                "cores and train slower than fewer would",
                stacklevel=3,
            )


def _train_rank(out, corpora, recipe, options) -> str | None:
    """One rank of a data-parallel ``train``: the same fit as every other rank, saved by rank 0 only."""
    import torch.distributed as dist

    from .artifact import save_model
    from .training.distributed import world

    w = world()
    options = dict(options)
    metrics = options.pop("metrics")
    options["progress"] = options["progress"] and w.rank == 0
    model, extra, utterances, r = _fit_recipe(corpora, recipe, **options)
    extra["distributed"] = {"processes": w.size, "backend": dist.get_backend() if w.distributed else None}
    if w.rank != 0:
        return None
    return str(
        save_model(
            model,
            out,
            recipe=r.to_dict(),
            trained_on=_trained_on(utterances, corpora),
            metrics=metrics or {},
            extra=extra,
        )
    )


def _train_here(
    corpora,
    recipe,
    *,
    out,
    overrides=None,
    label_set=None,
    metrics=None,
    progress=True,
    calibrate=False,
    target=None,
    adapt_method=None,
) -> Path:
    """:func:`train` in this process."""
    from .artifact import save_model
    from .recipe import load_recipe

    r = load_recipe(recipe, overrides)
    model, extra, utterances, r = _fit_recipe(
        corpora,
        r,
        label_set=label_set,
        progress=progress,
        calibrate=calibrate,
        target=target,
        adapt_method=adapt_method,
    )
    return save_model(
        model, out, recipe=r.to_dict(), trained_on=_trained_on(utterances, corpora), metrics=metrics or {}, extra=extra
    )


def _fit_recipe(corpora, r, *, label_set, progress, calibrate, target, adapt_method):
    """Load the data and fit recipe ``r``: ``(model, extra for model.json, utterances, r)``."""
    from .models import build_model

    utterances = prepare_data(corpora, label_set or r.label_set)
    extra = {}
    if calibrate:  # before the final fit, so a recipe that cannot be calibrated fails early
        from .evaluation.run import fit_temperatures

        extra["calibration"] = fit_temperatures(lambda: build_model(r.model), utterances, **_voices_mode(r.model))
    if target is not None:
        from .adaptation import fit_with_target, target_info, training_target

        model = build_model(r.model)
        method, clips = training_target(model, target, adapt_method, label_set=label_set or r.label_set)
        model, method = fit_with_target(model, utterances, clips, method=method, progress=progress)
        extra["adaptation"] = target_info(method, clips, target, when="train")
        if method != "coral":
            extra["adaptation"]["domain_weight"] = model._train_config().domain_weight
    elif adapt_method is not None:
        raise ConfigError(f"--adapt-method {adapt_method} needs --target PATH_OR_SPEC (the unlabelled target audio)")
    else:
        model = build_model(r.model).fit(utterances, progress=progress)
    if getattr(model, "strategy_", None) is not None:  # the fine-tuning strategy a neural family chose
        extra["strategy"] = model.strategy_
    return model, extra, utterances, r


def pretrain(
    data,
    *,
    out,
    method: str = "simclr",
    backbone: str | None = None,
    recipe=None,
    teacher=None,
    teacher_output: str = "probabilities",
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> tuple[Path, dict]:
    """Pretrain a network's backbone on unlabelled audio and write the checkpoint folder ``out`` (``serkit pretrain``).

    Parameters
    ----------
    data
        Audio files, folders, CSV manifests or corpus specs ``NAME:ROOT`` (labels are never read).
    method
        ``"simclr"`` (NT-Xent on two augmented views) or ``"teacher"`` (match ``teacher``'s vectors);
        see :mod:`serkit.training.pretrain`.
    backbone
        ``soundnet-res``, ``cnn-lstm`` or ``soundnet8``: the network of the shipped recipe
        :data:`BACKBONE_RECIPES` names (``recipe`` picks any other; both given must agree).
    teacher
        ``method="teacher"``: a serkit model folder (its probabilities, or with
        ``teacher_output="embedding"`` its embedding), a backbone name (:data:`TEACHER_BACKBONES`:
        ``ge2e``'s speaker embedding, SoundNet's conv5), or an ``.npz`` with ``files`` and one of
        ``targets`` / ``probabilities`` / ``embeddings`` (one row per file; ``serkit embed`` writes
        this form), e.g. an image network's posteriors of a video's frames.
    overrides
        ``--set`` keys, e.g. ``pretrain.epochs=1`` (the recipe's ``pretrain:`` section) or ``model.…``.
    resume
        Continue ``out`` from its last epoch up to ``pretrain.epochs``.
    stop_after
        Stop after this many epochs in total (tests interrupt a run this way).

    Returns
    -------
    (out, the checkpoint's ``pretrain.json`` as a dict)
    """
    from .adaptation import content_hash, target_utterances
    from .models import build_model
    from .models.neural import read_cached
    from .recipe import load_recipe
    from .training.pretrain import METHODS, PretrainConfig, Pretrainer

    if method not in METHODS:
        raise ConfigError(f"unknown pretraining method {method!r}; choose one of {', '.join(METHODS)}")
    if backbone is not None and backbone not in BACKBONE_RECIPES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_RECIPES)}")
    if method == "teacher" and teacher is None:
        raise ConfigError("--method teacher needs --teacher MODEL_DIR | ge2e | soundnet | FILE.npz")
    if method != "teacher" and teacher is not None:
        raise ConfigError(f"--teacher applies to --method teacher, not {method}")
    r = load_recipe(recipe or BACKBONE_RECIPES[backbone or "soundnet-res"], overrides)
    config = PretrainConfig.from_dict(r.pretrain)  # bad options fail before any audio is read
    model = build_model(r.model)
    if not model.pretrainable:
        raise ConfigError(
            f"recipe {r.name!r} builds a {model.family} model, whose backbone serkit pretrain cannot train; "
            f"use --backbone {' | '.join(BACKBONE_RECIPES)}"
        )
    arch = model.architecture()
    if backbone is not None and arch["network"] != backbone:
        raise ConfigError(
            f"--backbone {backbone} but recipe {r.name!r} builds a {arch['network']} network; give one of them"
        )
    clips = sorted(
        {(u.path, u.start, u.end): u for u in target_utterances(data, what="pretraining data")}.values(),
        key=lambda u: (u.path, u.start or 0.0, u.end or 0.0),
    )
    targets, teacher_info = None, None
    if method == "teacher":
        targets, teacher_info = _teacher_targets(teacher, clips, teacher_output, progress=progress)
    signals = [read_cached(u.path, model.sampling_rate, u.start, u.end) for u in clips]
    info = {
        "data": [str(d) for d in ([data] if isinstance(data, (str, Path)) else data)],
        "n_clips": len(clips),
        "hours": round(sum(len(s) for s in signals) / model.sampling_rate / 3600, 3),
        "content_hash": content_hash(clips),
        "recipe": r.name,
        **({"teacher": teacher_info} if teacher_info else {}),
    }
    net = model.pretrain_network()
    meta = Pretrainer(config, progress=progress).fit(
        net,
        signals,
        method=method,
        architecture=arch,
        out=out,
        teacher=targets,
        resume=resume,
        info=info,
        stop_after=stop_after,
    )
    return Path(out), meta


def _teacher_targets(teacher, clips, output: str, *, progress: bool):
    """One teacher vector per clip [shape=(n, k), float32] and what the teacher was, for ``pretrain.json``."""
    import numpy as np

    if output not in ("probabilities", "embedding"):
        raise ConfigError(f"--teacher-output must be probabilities or embedding, got {output!r}")
    text = str(teacher)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".npz":
        return _npz_targets(path, clips), {"kind": "npz", "path": str(path)}
    if path.is_dir():
        from .models import load_model

        model, _ = load_model(path)
        if output == "embedding":
            if not model.has_embedding:
                raise ConfigError(
                    f"teacher '{path}' ({model.family}) has no embedding; use --teacher-output probabilities"
                )
            vectors = model.embed_utterances(clips, progress=progress)
        else:
            vectors = model.predict_proba_utterances(clips, adapt=False)
        return np.asarray(vectors, dtype=np.float32), {
            "kind": "model",
            "path": str(path),
            "family": model.family,
            "output": output,
        }
    if text in TEACHER_BACKBONES:
        from .features.base import extract, get_extractor

        extractor = get_extractor(text, **TEACHER_BACKBONES[text])
        vectors = extract(extractor, clips, progress=progress)
        return np.asarray(vectors, dtype=np.float32), {"kind": "backbone", "name": text, **TEACHER_BACKBONES[text]}
    raise ConfigError(
        f"teacher {text!r} is not a model folder, an .npz of per-file targets or a backbone "
        f"({', '.join(TEACHER_BACKBONES)}); train a model with serkit train, or write an .npz with arrays files and targets"
    )


def _npz_targets(path: Path, clips):
    """Rows of an ``.npz`` (``files`` + ``targets`` | ``probabilities`` | ``embeddings``) in ``clips``' order."""
    import os

    import numpy as np

    from .artifact import load_npz

    if not path.is_file():
        raise ConfigError(f"teacher file '{path}' does not exist")
    arrays = load_npz(path)
    key = next((k for k in ("targets", "probabilities", "embeddings") if k in arrays), None)
    if "files" not in arrays or key is None:
        raise ConfigError(
            f"teacher '{path}' has arrays {sorted(arrays)}; it needs 'files' (one path per row) and 'targets' "
            "(or 'probabilities' / 'embeddings'), e.g. np.savez(path, files=names, targets=vectors)"
        )
    files = [str(f) for f in arrays["files"]]
    vectors = np.asarray(arrays[key], dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(files):
        raise ConfigError(f"teacher '{path}': {key} has shape {vectors.shape}, need one row per file ({len(files)})")
    by_path = {os.path.abspath(os.path.join(path.parent, f)): i for i, f in enumerate(files)}
    names: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        names.setdefault(os.path.basename(f), []).append(i)
    rows, missing = [], []
    for u in clips:
        i = by_path.get(os.path.abspath(u.path))
        if i is None and len(names.get(os.path.basename(u.path), [])) == 1:
            i = names[os.path.basename(u.path)][0]
        if i is None:
            missing.append(u.path)
        rows.append(i)
    if missing:
        raise ConfigError(
            f"teacher '{path}' has no row for {len(missing)} of {len(clips)} clips (e.g. '{missing[0]}'); "
            "list every file of --data in its 'files' array (absolute, relative to the .npz, or unique file names)"
        )
    return vectors[np.asarray(rows)]


def _voices_mode(model_section) -> dict:
    """``fit_temperatures`` arguments that also calibrate the ``voices`` mode, for a model that can be
    adapted by voice groups (:mod:`serkit.adaptation`), so ``serkit adapt`` needs no labels to stay calibrated."""
    from functools import partial

    from .models import build_model

    if "voices" not in build_model(model_section).domain_methods:
        return {}
    from .adaptation import MIN_TARGET_CLIPS, fold_adapter

    return {
        "domain_adapt": partial(fold_adapter, method="voices"),
        "domain_mode": "voices",
        "domain_min_clips": MIN_TARGET_CLIPS,
    }


def adapt(model_dir, target, *, out, method: str | None = None, source: Sequence[str] | None = None, progress=False):
    """Adapt the model in ``model_dir`` to unlabelled target audio and save it to ``out`` (``serkit adapt``).

    ``target``: audio files, a folder, a CSV manifest or a corpus spec ``NAME:ROOT``; ``source``:
    the training corpora's specs, for a model saved without source statistics (the shipped default
    model). Returns ``(out, adaptation info)`` — the info is also ``model.json``'s ``"adaptation"``.
    See :mod:`serkit.adaptation`.
    """
    from .adaptation import adapt_model

    if model_dir is None:
        from .inference import DEFAULT_MODEL_DIR

        model_dir = DEFAULT_MODEL_DIR
    return adapt_model(model_dir, target, out=out, method=method, source=source, progress=progress)


def enrol(
    model_dir,
    support,
    *,
    out,
    shots: int | None = None,
    seed: int = 0,
    label_set: str = "native",
    progress: bool = False,
):
    """Enrol the model in ``model_dir`` on a few labelled clips of a new domain and save it to ``out`` (``serkit enrol``).

    ``support``: a folder with one sub-folder per class, a CSV manifest with labels, or a corpus
    spec ``NAME:ROOT``; ``shots``: clips per class (seeded by ``seed``), all by default. The output
    is a ``prototype`` model predicting over the union of the model's classes and the support's.
    Returns ``(out, enrolment info)`` — also ``model.json``'s ``"enrolment"``. See :mod:`serkit.enrolment`.
    """
    from .enrolment import enrol_model

    if model_dir is None:
        from .inference import DEFAULT_MODEL_DIR

        model_dir = DEFAULT_MODEL_DIR
    return enrol_model(model_dir, support, out=out, shots=shots, seed=seed, label_set=label_set, progress=progress)


def export(
    model_dir,
    out,
    *,
    format: str = "onnx",
    quantise: str | None = None,
    calibration: Sequence | None = None,
    calibration_clips: int | None = None,
    opset: int = 17,
    progress: bool = False,
) -> Path:
    """Export the model in ``model_dir`` for deployment and write it to ``out`` (what ``serkit export`` runs).

    ``format`` is ``"onnx"`` (the only one); ``calibration`` takes audio files, folders and CSV
    manifests; the other options are :func:`serkit.deploy.export.export_onnx`'s. A ``features`` model
    (the default model's family) exports as a chain (:func:`serkit.deploy.export.export_features`:
    numpy front ends, the GE2E network and the classifier as ONNX graphs), without quantisation.
    Returns ``out``.
    """
    from .artifact import read_metadata
    from .deploy.export import export_features, export_onnx

    if format != "onnx":
        raise ConfigError(f"unknown export format {format!r}; serkit exports onnx")
    if calibration:
        from .inputs import expand_inputs

        calibration = [c.path for c in expand_inputs(calibration) if not c.error]
        if not calibration:
            raise ConfigError(
                "no audio files found in the --calibration paths; pass audio files, folders or a CSV manifest"
            )
    if read_metadata(model_dir).get("family") == "features":
        if quantise or calibration:
            raise ConfigError(
                "a features model exports without quantisation (its graphs are the GE2E network and a linear "
                "classifier, already fast in float); drop --quantise / --calibration"
            )
        return export_features(model_dir, out, opset=opset)
    return export_onnx(
        model_dir,
        out,
        quantise=quantise,
        calibration=calibration,
        calibration_clips=calibration_clips,
        opset=opset,
        progress=progress,
    )


def compress(
    model_dir,
    out,
    *,
    prune_amount: float | None = None,
    prune_threshold: float | None = None,
    distil_student: str | None = None,
    qat: bool = False,
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int | None = None,
    corpora: Sequence[str] | None = None,
    label_set: str | None = None,
    progress: bool = False,
):
    """Compress the model in ``model_dir`` and save the result to ``out`` (what ``serkit compress`` runs).

    Exactly one of ``prune_amount``, ``prune_threshold``, ``distil_student`` (a recipe name or
    YAML path whose model is soundnet-res), or ``qat`` alone (:mod:`serkit.deploy.compress`).
    Training audio comes from ``corpora`` (``NAME:ROOT`` specs; default: the corpora recorded in
    the model's ``model.json``), mapped onto ``label_set`` (default: the model's recipe's).
    Returns ``(out, compression info)``.
    """
    from .artifact import save_model
    from .deploy.compress import check_prunable, distil, prune, quantisation_aware
    from .models import load_model

    chosen = [prune_amount is not None, prune_threshold is not None, distil_student is not None]
    if sum(chosen) > 1:
        raise ConfigError(
            "choose one compression: --prune AMOUNT, --prune-threshold T or --distil (--qat may join pruning)"
        )
    if not any(chosen) and not qat:
        raise ConfigError("nothing to do: pass --prune AMOUNT, --prune-threshold T, --distil or --qat")
    if distil_student is not None and qat:
        raise ConfigError(
            "--qat applies to pruning or on its own; distil first, then run serkit compress STUDENT --qat"
        )
    if epochs is not None and epochs < 0:
        raise ConfigError(f"--epochs {epochs} must be >= 0")
    model, meta = load_model(model_dir)
    if distil_student is None:  # before any audio is read
        check_prunable(model, "pruning" if any(chosen) else "quantisation-aware training")
    need_audio = distil_student is not None or qat or (epochs is None or epochs > 0)
    utterances = None
    if need_audio:
        specs = list(corpora or (meta.get("trained_on") or {}).get("corpora") or [])
        if not specs:
            raise ConfigError(
                f"'{model_dir}' does not record its training corpora; pass --corpus NAME:ROOT "
                "(or --epochs 0 to prune without fine-tuning)"
            )
        utterances = prepare_data(specs, label_set or (meta.get("recipe") or {}).get("label_set") or "native")
    if prune_amount is not None or prune_threshold is not None:
        new = prune(
            model,
            utterances,
            amount=prune_amount,
            threshold=prune_threshold,
            finetune_epochs=3 if epochs is None else epochs,
            qat=qat,
            progress=progress,
        )
    elif distil_student is not None:
        from .recipe import load_recipe

        section = load_recipe(distil_student).model
        new = distil(
            model, utterances, student=section, temperature=temperature, alpha=alpha, epochs=epochs, progress=progress
        )
    else:
        new = quantisation_aware(model, utterances, epochs=3 if epochs is None else max(1, epochs), progress=progress)
    info = {**new.compression_, "source": str(model_dir), "source_family": meta["family"]}
    trained_on = meta.get("trained_on") or {}
    if corpora:
        trained_on = {"corpora": list(corpora), "n_utterances": len(utterances)}
    recipe = meta.get("recipe") if distil_student is None else {"name": f"distilled-{getattr(model, 'family', '')}"}
    save_model(new, out, recipe=recipe, trained_on=trained_on, extra={"compression": info})
    return out, info

"""Unsupervised domain adaptation of a trained model to unlabelled target audio (``serkit adapt``).

A transformation of a model: a model folder in, an adapted model folder out, with what it was
adapted to in ``model.json`` (``"adaptation": {"method", "n_files", "content_hash", "target"}``).

``voices`` (feature models trained with per-speaker normalisation, the default for them): the
target's speakers are unknown, so its clips are clustered into voice groups by the GE2E speaker
encoder (:func:`serkit.speakers.voice_groups`, :data:`serkit.speakers.VOICE_GROUPS` groups) and
each group is standardised like one speaker; a head self-trained on the target's confident
predictions (:func:`serkit.domain.fit_target_head`) then refines the probabilities
(:meth:`serkit.models.features.FeatureClassifier.adapt_voices`). A new clip joins the nearest
group. Chosen over CORAL by leave-one-corpus-out on training corpora (``benchmarks/voices.py``).

``coral`` (feature models, :attr:`Classifier.domain_methods`): the target clips' features in the
model's single-utterance space are summarised by a mean and a Ledoit-Wolf covariance
(:mod:`serkit.domain`); the adapted model maps a clip's features through the CORAL map that gives
target features the *source* (training) mean and covariance, then classifies as before. The source
statistics are stored in the model (``domain.npz``); a model saved without them (the shipped
default model, models from earlier versions) gets them recomputed from its training corpora
(``source=``).

``adabn`` (networks with batch norm, after training): the batch-norm statistics that came from the
training data are re-estimated on the target audio
(:meth:`serkit.models.neural.WaveformClassifier.adapt_batchnorm`); nothing else changes, so an ONNX
export of the adapted model carries the adaptation in its graph.

**While training** (``serkit train|evaluate --target SPEC [--adapt-method M]``, :func:`fit_with_target`):
``coral`` re-colours a feature model's training rows to the target before the classifier is fitted
(:meth:`serkit.models.features.FeatureClassifier.fit_target`); ``deep-coral`` and ``mmd`` add a
domain loss between source and target pooled embeddings to every training batch of a network
(:meth:`serkit.models.neural.WaveformClassifier.fit_target`, λ = ``train.domain_weight`` = 1).
``serkit evaluate --adapt`` spells the train-time CORAL ``coral-train`` (``coral`` there is the
post-hoc map), so each spelling means one thing: :data:`EVALUATE_METHODS`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from .domain import MIN_CORAL_CLIPS, coral_map, domain_stats
from .errors import ConfigError

__all__ = [
    "METHODS",
    "check_method",
    "target_utterances",
    "content_hash",
    "adapt_classifier",
    "adapt_model",
    "fold_adapter",
    "POST_HOC",
    "TRAIN_TIME",
    "EVALUATE_METHODS",
    "MIN_TARGET_CLIPS",
    "check_target_count",
    "default_method",
    "post_hoc_method",
    "fit_with_target",
    "target_info",
    "fold_trainer",
    "training_target",
    "target_trainer",
]

#: every method (the models that take each declare it in ``Classifier.domain_methods``)
METHODS = ("voices", "coral", "adabn", "deep-coral", "mmd")
#: methods that adapt a trained model (``serkit adapt``)
POST_HOC = ("voices", "coral", "adabn")
#: methods applied while training (``serkit train --target``)
TRAIN_TIME = ("coral", "deep-coral", "mmd")
#: ``serkit evaluate --adapt`` spellings → (method, when): ``coral`` is the post-hoc map, ``coral-train``
#: the train-time re-colouring
EVALUATE_METHODS = {
    "voices": ("voices", "after"),
    "coral": ("coral", "after"),
    "adabn": ("adabn", "after"),
    "deep-coral": ("deep-coral", "train"),
    "mmd": ("mmd", "train"),
    "coral-train": ("coral", "train"),
}
#: The fewest target clips any method takes (:data:`serkit.domain.MIN_CORAL_CLIPS`): CORAL's target
#: mean and covariance, AdaBN's per-channel means and variances of the pooled embedding and the
#: target batches of Deep CORAL / MMD are all estimated from them; below ~20 the estimates' error
#: is of the order of the shifts being corrected.
MIN_TARGET_CLIPS = MIN_CORAL_CLIPS

_WHEN = {"after": POST_HOC, "train": TRAIN_TIME}
_HOW = {
    "voices": "voice groups standardised like speakers, then self-training (feature models with speaker normalisation)",
    "coral": "CORAL on the features (feature models)",
    "adabn": "AdaBN, batch-norm statistics re-estimated on the target (networks)",
    "deep-coral": "a Deep CORAL loss while training (networks)",
    "mmd": "a multi-kernel MMD loss while training (networks)",
}


def _first_method(model, valid: Sequence[str], missing: str) -> str:
    """The first of ``model.domain_methods`` in ``valid``; else a :class:`ConfigError` naming the family."""
    for m in model.domain_methods:
        if m in valid:
            return m
    family = getattr(model, "family", type(model).__name__)
    raise ConfigError(f"model family {family!r} {missing}")


def default_method(model) -> str:
    """The train-time method for ``model``: ``coral`` for feature models, ``deep-coral`` for networks."""
    return _first_method(
        model,
        ("coral", "deep-coral", "mmd"),
        "has no train-time domain adaptation; families with one: features (coral), "
        "soundnet, soundnet-res, cnn-lstm, transformer (deep-coral, mmd)",
    )


def post_hoc_method(model) -> str:
    """What ``serkit adapt`` uses when no method is named: the model's first post-hoc method
    (``voices`` for feature models with speaker normalisation, else ``coral``; ``adabn`` for networks)."""
    return _first_method(
        model,
        POST_HOC,
        "cannot be adapted after training; families that can: features (voices, coral), "
        "soundnet, soundnet-res, cnn-lstm, transformer (adabn)",
    )


def check_method(model, method: str, *, when: str = "after") -> None:
    """Raise a :class:`ConfigError` that says what to do unless ``model`` can be adapted by ``method``.

    ``when``: ``"after"`` (a trained model, ``serkit adapt``) or ``"train"`` (``serkit train --target``).
    """
    valid = _WHEN[when]
    if method not in METHODS:
        raise ConfigError(f"unknown adaptation method {method!r}; valid methods: {', '.join(valid)}")
    if method not in valid:
        if when == "after":
            raise ConfigError(
                f"{method} is a loss used while training: train with --target PATH_OR_SPEC --adapt-method {method} "
                f"(serkit train / evaluate --adapt {method}); a trained model is adapted with: {', '.join(valid)}"
            )
        raise ConfigError(
            f"{method} adapts a trained model: run serkit adapt --model MODEL --adapt-method {method} --target ...; "
            f"methods applied while training: {', '.join(valid)}"
        )
    applicable = [m for m in model.domain_methods if m in valid]
    if method not in tuple(model.domain_methods):
        family = getattr(model, "family", type(model).__name__)
        hint = (
            f"methods that apply to it: {', '.join(applicable)}"
            if applicable
            else "no method applies to it " + ("after training" if when == "after" else "while training")
        )
        raise ConfigError(f"{method} ({_HOW[method]}) does not apply to model family {family!r}; {hint}")


def check_target_count(method: str, n: int) -> None:
    if n < MIN_TARGET_CLIPS:
        raise ConfigError(
            f"{method} needs at least {MIN_TARGET_CLIPS} target clips to estimate the target's statistics; "
            f"the target has {n}: give more unlabelled clips of the target domain"
        )


def target_utterances(target, *, label_set: str = "native", what: str = "target") -> list:
    """Unlabelled clips from ``target``: audio files, folders or CSV manifests (paths), or a corpus spec ``NAME:ROOT``.

    ``what`` names the clips in error messages (``"target"``, ``"pretraining data"``)."""
    from .corpora import Utterance, load_corpus
    from .inputs import expand_inputs

    targets = [target] if isinstance(target, (str, os.PathLike)) else list(target)
    out = []
    for t in targets:
        if os.path.exists(os.path.expanduser(str(t))):
            clips = [c for c in expand_inputs([os.path.expanduser(str(t))]) if not c.error]
            out += [
                Utterance(
                    id=f"{c.path}:{c.start}:{c.end}",
                    path=c.path,
                    label="",
                    speaker="target",
                    corpus="target",
                    start=c.start,
                    end=c.end,
                )  # fmt: skip
                for c in clips
            ]
        elif ":" in str(t):
            out += load_corpus(str(t), label_set=label_set, check_audio=True)
        else:
            raise ConfigError(
                f"{what} {str(t)!r} is neither an existing file or folder nor a corpus spec NAME:ROOT; "
                "pass a folder of unlabelled audio (e.g. calls/) or a spec like emodb:data/emodb"
            )
    if not out:
        raise ConfigError(
            f"no audio found in the {what} {', '.join(map(str, targets))}; pass a folder of audio files "
            "(.wav .flac .ogg .mp3), a CSV manifest or a corpus spec NAME:ROOT"
        )
    return out


def content_hash(utterances) -> str:
    """sha256 over the sorted ``path, size, start, end`` of the clips: what the adaptation saw."""
    lines = []
    for u in utterances:
        try:
            size = os.path.getsize(u.path)
        except OSError:
            size = -1
        lines.append(f"{os.path.abspath(u.path)}\t{size}\t{u.start}\t{u.end}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


#: Covariance shrinkage target of the target clips' statistics (:func:`serkit.domain.covariance`).
#: Chosen by inner leave-one-corpus-out on training corpora only (``benchmarks/coral.py``: for each
#: held-out corpus, models trained on one of the other two and adapted to the last): "diagonal"
#: won the inner comparison in 2 of 3 folds (mean inner UA 0.312 against 0.310 for "identity").
SHRINK_TO = "diagonal"


def adapt_classifier(
    model, target, *, method: str | None = None, source=None, shrink_to: str | None = None, progress: bool = False
):
    """Adapt a fitted classifier in place to unlabelled ``target`` utterances; returns the model.

    ``method`` ``None``: :func:`post_hoc_method`. ``source`` (utterances) recomputes the CORAL source
    statistics, needed when the model has none; ``shrink_to`` is the target covariance's shrinkage
    target (default :data:`SHRINK_TO`).
    """
    method = method or post_hoc_method(model)
    check_method(model, method)
    target = list(target)
    check_target_count(method, len(target))
    if method == "adabn":
        return model.adapt_batchnorm(target, progress=progress)
    if method == "voices":
        return model.adapt_voices(target, progress=progress)
    if source is not None:
        source = list(source)
        if len(source) < MIN_CORAL_CLIPS:
            raise ConfigError(f"the source corpora have {len(source)} clips; CORAL needs at least {MIN_CORAL_CLIPS}")
        model.set_domain(source_stats=[domain_stats(x) for x in model.domain_features(source, progress=progress)])
    stats = getattr(model, "source_stats_", None)
    if not stats:
        raise ConfigError(
            "this model keeps no source feature statistics (it was saved before serkit kept them): pass the corpora "
            "it was trained on (--source NAME:ROOT ..., source= in Python), or retrain it with this version "
            "(serkit train --corpus NAME:ROOT ... --out MODEL)"
        )
    rows = model.domain_features(target, progress=progress)
    shrink_to = shrink_to or SHRINK_TO
    maps = [
        coral_map(src, domain_stats(x, shrink_to=shrink_to), direction="target-to-source")
        for src, x in zip(stats, rows)
    ]
    return model.set_domain(maps=maps)


def _specs(specs) -> list[str]:
    return [specs] if isinstance(specs, str) else list(specs or [])


def adapt_model(
    model_dir,
    target,
    *,
    out,
    method: str | None = None,
    source: Sequence[str] | None = None,
    progress: bool = False,
) -> tuple[Path, dict]:
    """Adapt the model in ``model_dir`` to the unlabelled ``target`` and save it to ``out``.

    ``target``: a folder / files / manifest of audio, or a corpus spec; ``source``: corpus specs of
    the training data, for a model without stored source statistics. Returns ``(out, adaptation info)``.
    """
    from .artifact import save_model
    from .corpora import load_corpora
    from .models import load_model

    model, meta = load_model(model_dir)
    method = method or post_hoc_method(model)
    check_method(model, method)
    label_set = (meta.get("recipe") or {}).get("label_set") or "native"
    sources = _specs(source)
    if method == "coral" and not sources and not getattr(model, "source_stats_", None):
        trained = ", ".join((meta.get("trained_on") or {}).get("corpora") or []) or "not recorded"
        raise ConfigError(
            f"model '{model_dir}' keeps no source feature statistics (saved before serkit kept them; it was "
            f"trained on: {trained}): pass those corpora with --source NAME:ROOT ... (e.g. --source "
            "emodb:$SERKIT_DATA/emodb tess:$SERKIT_DATA/tess ravdess:$SERKIT_DATA/ravdess-sample for the default "
            "model), or retrain it with this version (serkit train --corpus NAME:ROOT ... --out MODEL)"
        )
    clips = target_utterances(target, label_set=label_set)
    source_utts = load_corpora(sources, label_set=label_set, check_audio=True) if sources else None
    adapt_classifier(model, clips, method=method, source=source_utts, progress=progress)
    info = {**target_info(method, clips, target, when="after"), "source_model": str(model_dir)}
    if method == "coral":
        info["space"] = (
            "single-utterance features mapped onto the rows the classifier was fitted on; speaker-adapted "
            "predictions unchanged"
        )
        info["shrinkage"] = {"source": [round(float(s.shrinkage), 4) for s in model.source_stats_]}
    elif method == "voices":
        heads = [h for h in model.voices_["heads"] if h is not None]
        info["voice_groups"] = model.voices_["sizes"]
        info["self_trained_classes"] = sorted({model.labels[int(c)] for h in heads for c in h.classes})
        info["space"] = (
            "single clips standardised with their voice group's statistics (GE2E clusters of the target), "
            "probabilities refined by a head self-trained on the target; speaker-adapted predictions unchanged"
        )
    else:
        info.update(model.adabn_)
    if meta.get("adaptation"):
        info["previous"] = meta["adaptation"]
    if sources:
        info["source_statistics"] = {"corpora": sources, "n_clips": len(source_utts)}
    standard = {"format_version", "serkit_version", "created", "family", "labels", "sampling_rate", "config"}
    standard |= {"recipe", "trained_on", "metrics", "files", "adaptation"}
    extra = {k: v for k, v in meta.items() if k not in standard}
    save_model(
        model,
        out,
        recipe=meta.get("recipe"),
        trained_on=meta.get("trained_on"),
        metrics={},  # the source model's scores describe it unadapted
        extra={**extra, "adaptation": info},
    )
    return Path(out), info


def fold_adapter(model, test, *, method: str | None = None, progress: bool = False):
    """For ``evaluation.evaluate(domain_adapt=...)``: adapt a fold's fitted model to its test audio (labels unused)."""
    # the labels are never read: only paths and segments reach the feature extractors
    return adapt_classifier(model, test, method=method, progress=progress)


# -- while training ---------------------------------------------------------------------------------


def target_info(method: str, clips, target, *, when: str) -> dict:
    """``model.json``'s ``"adaptation"``: method, when, number of files and clips, content hash, target."""
    targets = [str(t) for t in ([target] if isinstance(target, (str, os.PathLike)) else target)]
    return {
        "method": method,
        "when": "training" if when == "train" else "after training",
        "n_files": len({u.path for u in clips}),
        "n_clips": len(clips),
        "content_hash": content_hash(clips),
        "target": targets[0] if len(targets) == 1 else targets,
    }


def training_target(model, target, method: str | None = None, *, label_set: str = "native") -> tuple[str, list]:
    """``(method, target clips)`` for training ``model`` towards ``target`` (``train|evaluate --target``).

    ``method`` ``None`` is :func:`default_method`; the method is checked before any audio is read,
    then the target's clips are read and counted (:func:`check_target_count`).
    """
    method = method or default_method(model)
    check_method(model, method, when="train")
    clips = target_utterances(target, label_set=label_set)
    check_target_count(method, len(clips))
    return method, clips


def fit_with_target(model, utterances, target, *, method: str | None = None, progress: bool = False):
    """Fit an unfitted classifier on labelled ``utterances``, adapted while training to unlabelled ``target``.

    ``method``: ``coral`` (feature models: training rows re-coloured to the target, shrinkage target
    :data:`SHRINK_TO`), ``deep-coral`` or ``mmd`` (networks: a domain loss on every batch);
    ``None``: :func:`default_method`. Returns ``(fitted model, method)``.
    """
    method = method or default_method(model)
    check_method(model, method, when="train")
    target = list(target)
    check_target_count(method, len(target))
    if method == "coral":
        fitted = model.fit_target(utterances, target, method=method, shrink_to=SHRINK_TO, progress=progress)
    else:
        fitted = model.fit_target(utterances, target, method=method, progress=progress)
    return fitted, method


def fold_trainer(model_factory, train, test, *, method: str, progress: bool = False):
    """For ``evaluation.evaluate(domain_fit=...)``: a fresh model trained on ``train`` with the fold's
    test audio (labels unused) as the target."""
    return fit_with_target(model_factory(), train, test, method=method, progress=progress)[0]


def target_trainer(model_factory, train, test, *, method: str, target, progress: bool = False):
    """For ``evaluation.evaluate(domain_fit=...)`` with a fixed target (``serkit evaluate --target``):
    a fresh model trained on ``train`` adapted to the ``target`` utterances (the fold's test set unused)."""
    return fit_with_target(model_factory(), train, target, method=method, progress=progress)[0]

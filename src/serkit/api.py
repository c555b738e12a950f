"""The task-level API behind the CLI and the HTTP service: train, evaluate, predict.

Each function takes corpora by spec (``"emodb:/data/emodb"``), a recipe by name or path, and
writes its outputs atomically. The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from .errors import ConfigError

__all__ = ["train", "evaluate", "prepare_data"]


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


def evaluate(corpora: Sequence[str], recipe="compare-svm", *, protocol: str | None = None,
             out=None, overrides: list[str] | None = None, label_set: str | None = None,
             report_both: bool = True, allow_speaker_dependent: bool = False, progress: bool = True):
    """Evaluate a recipe on corpora under a (speaker-independent by default) protocol.

    A protocol that lets a speaker appear in both training and test data (``random-split:K``)
    runs only with ``allow_speaker_dependent=True`` and is marked as such in the report.

    Returns the :class:`serkit.evaluation.Report`; with ``out`` also writes report.json,
    report.md, confusion.png and predictions.csv there.
    """
    from .corpora import UNKNOWN_SPEAKER
    from .evaluation import evaluate as run_protocol
    from .evaluation import parse_protocol
    from .recipe import load_recipe

    r = load_recipe(recipe, overrides)
    proto = parse_protocol(protocol or r.protocol)
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
    t0 = time.perf_counter()
    report = run_protocol(r.build, utterances, proto, report_both=report_both, progress=progress)
    report.recipe = r.to_dict()  # normalisation stays the models' declared one (Classifier.normalisation)
    report.extra.setdefault("corpora", list(corpora))
    report.extra.setdefault("label_set", label_set or r.label_set)
    report.seconds = time.perf_counter() - t0
    if out is not None:
        report.save(out)
    return report


def train(corpora: Sequence[str], recipe="compare-svm", *, out, overrides: list[str] | None = None,
          label_set: str | None = None, metrics: dict | None = None, progress: bool = True) -> Path:
    """Train a recipe on all utterances of the corpora and save the model artifact to ``out``."""
    from .artifact import save_model
    from .recipe import load_recipe

    r = load_recipe(recipe, overrides)
    utterances = prepare_data(corpora, label_set or r.label_set)
    model = r.build().fit(utterances, progress=progress)
    extra = {}
    if getattr(model, "strategy_", None) is not None:  # the fine-tuning strategy a neural family chose
        extra["strategy"] = model.strategy_
    return save_model(model, out, recipe=r.to_dict(), trained_on=_trained_on(utterances, corpora),
                      metrics=metrics or {}, extra=extra)

"""Few-shot enrolment of a trained model on a few labelled clips of the user's domain (``serkit enrol``).

A transformation of a model: a model folder in, a ``prototype`` model folder out
(:mod:`serkit.models.prototype`) that holds the base model and one prototype per support class in
its embedding space, with what it was enrolled on in ``model.json`` (``"enrolment": {support,
classes, new_classes, kept_from_base, shots, n_clips, n_files, per_class, content_hash, ...}``).
Classes the base never had are added; classes both know are re-centred on the new domain; base
classes the support set lacks are kept from the base model. How prototype and base
probabilities are combined: :mod:`serkit.prototypes`.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from .errors import ConfigError

__all__ = ["support_utterances", "enrol_classifier", "enrol_model"]


def support_utterances(support, *, label_set: str = "native") -> list:
    """Labelled clips from ``support``: a folder with one sub-folder per class, a CSV manifest with
    labels, or a corpus spec ``NAME:ROOT``. Native labels are normalised (``"Anger"`` → ``"angry"``)
    so they meet the base model's names."""
    import dataclasses

    from .corpora import load_corpus
    from .labels import NATIVE, normalise_label

    spec = str(support)
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        spec = f"folder:{path}"
    elif os.path.isfile(path):
        if not path.lower().endswith(".csv"):
            raise ConfigError(
                f"support '{support}' is a single file; pass a folder with one sub-folder per class "
                "(support/angry/*.wav, support/calm/*.wav …), a CSV manifest with path and label columns, "
                "or a corpus spec NAME:ROOT"
            )
        spec = f"manifest:{path}"
    elif ":" not in spec:
        raise ConfigError(
            f"support {spec!r} is neither an existing folder or CSV manifest nor a corpus spec NAME:ROOT; pass a "
            "folder with one sub-folder per class, a CSV manifest with labels, or e.g. ravdess:data/ravdess"
        )
    utts = load_corpus(spec, label_set=label_set, check_audio=True)
    if label_set == NATIVE:
        utts = [dataclasses.replace(u, label=normalise_label(u.label)) for u in utts]
    utts = [u for u in utts if str(u.label)]
    if not utts:
        raise ConfigError(
            f"no labelled audio in the support set '{support}'; pass a folder with one sub-folder per class "
            "(support/angry/*.wav …), a CSV manifest with path and label columns, or a corpus spec NAME:ROOT"
        )
    return utts


def _unwrap(model):
    """Enrolling an enrolled model enrols its base again (prototypes do not stack)."""
    return getattr(model, "base_", model) if getattr(model, "family", "") == "prototype" else model


def enrol_classifier(
    model,
    support,
    *,
    shots: int | None = None,
    seed: int = 0,
    alpha: float | None = None,
    scale: float | None = None,
    base_meta: dict | None = None,
    progress: bool = False,
):
    """A :class:`~serkit.models.prototype.PrototypeClassifier` enrolling the fitted ``model`` on ``support``
    (labelled utterances). ``shots``: clips per class (seeded by ``seed``); ``None``: all of them.

    Returns ``(enrolled model, the support utterances used)``.
    """
    from .models.prototype import PrototypeClassifier
    from .prototypes import ALPHA, SCALE, fit_prototypes, sample_support

    model = _unwrap(model)
    if not model.has_embedding:
        raise ConfigError(
            f"model family {model.family or type(model).__name__!r} has no embedding to build prototypes in; "
            "enrol a features or soundnet model (the default model works)"
        )
    support = list(support)
    if shots is not None and (isinstance(shots, bool) or int(shots) != shots or shots < 1):
        raise ConfigError(f"--shots must be a whole number of at least 1, got {shots!r}")
    labels = [str(u.label) for u in support]
    try:
        idx = sample_support(labels, shots, seed=seed)
    except ValueError as exc:
        raise ConfigError(
            f"the support set is too small: {exc}; give more clips of the classes named or ask for fewer with --shots"
        ) from None
    chosen = [support[i] for i in idx]
    emb = model.embed_utterances(chosen, progress=progress)
    classes, protos, variance, residuals = fit_prototypes(emb, [str(u.label) for u in chosen])
    enrolled = PrototypeClassifier(alpha=ALPHA if alpha is None else alpha, scale=SCALE if scale is None else scale)
    return enrolled.set_prototypes(
        model, classes, protos, variance=variance, residuals=residuals, base_meta=base_meta
    ), chosen


def enrol_model(
    model_dir,
    support,
    *,
    out,
    shots: int | None = None,
    seed: int = 0,
    label_set: str = "native",
    progress: bool = False,
) -> tuple[Path, dict]:
    """Enrol the model in ``model_dir`` on ``support`` (folder / CSV manifest / corpus spec) and save it to ``out``.

    Returns ``(out, enrolment info)`` — the info is also ``model.json``'s ``"enrolment"``.
    """
    from .adaptation import content_hash
    from .artifact import save_model
    from .models import load_model

    model, meta = load_model(model_dir)
    if meta.get("family") == "prototype":  # re-enrolment starts from the base and its record
        from .artifact import read_metadata
        from .models.prototype import BASE_DIR

        meta = read_metadata(Path(model_dir).expanduser() / BASE_DIR)
    clips = support_utterances(support, label_set=label_set)
    enrolled, chosen = enrol_classifier(model, clips, shots=shots, seed=seed, base_meta=meta, progress=progress)
    base_labels = list(enrolled.base_.labels)
    counts = Counter(str(u.label) for u in chosen)
    info = {
        "method": "prototypes",
        "support": str(support),
        "label_set": label_set,
        "classes": list(enrolled.classes_),
        "new_classes": sorted(set(enrolled.classes_) - set(base_labels)),
        "kept_from_base": sorted(set(base_labels) - set(enrolled.classes_)),
        "shots": None if shots is None else int(shots),
        "seed": int(seed),
        "n_clips": len(chosen),
        "n_files": len({u.path for u in chosen}),
        "per_class": dict(sorted(counts.items())),
        "content_hash": content_hash(chosen),
        "base_model": str(model_dir),
        "base_family": enrolled.base_.family,
        "rule": {"alpha": enrolled.alpha, "scale": enrolled.scale, "temperature": enrolled.temperature},
        "space": "single-utterance embedding of the base model (embed_utterances)",
    }
    save_model(
        enrolled,
        out,
        recipe=meta.get("recipe"),
        trained_on=meta.get("trained_on"),
        metrics={},  # the base model's scores describe it un-enrolled
        extra={"enrolment": info},
    )
    return Path(out), info

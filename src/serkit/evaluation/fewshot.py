"""The ``fewshot:K`` protocol: train once per held-out part, then episodes of K-shot enrolment.

For each held-out corpus (when there are several; else each held-out speaker) a model is trained
on the rest once; its single-utterance probabilities and embeddings (``embed_utterances``) of the
held-out clips are computed once. Each of ``episodes`` seeded episodes samples K support clips per
class from the held-out clips and scores the rest three ways:

- ``enrolled`` — the base model enrolled on the support set (:func:`serkit.prototypes.enrolled_proba`,
  the exact rule of ``serkit enrol``'s ``prototype`` models);
- ``zero_shot`` — the un-enrolled model on the same query clips;
- ``svm`` — a linear SVM (``class_weight="balanced"``) trained on the K shots only, in the same
  embedding space.

Each is reported as the mean UA / WA / macro-F1 over episodes (per fold, and pooled over folds by
averaging the fold means of each episode) with a 95 % t-interval over episodes. The pieces are
callable on their own (:func:`fold_inputs`, :func:`episode_scores`) so a benchmark trains once per
fold and enrols for many K.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..prototypes import (
    ALPHA,
    COV_SHRINK,
    SCALE,
    SHRINK,
    enrolled_proba,
    fit_prototypes,
    rule_temperature,
    sample_support,
)
from .metrics import metrics

__all__ = ["METHODS", "t_interval", "fold_inputs", "episode_scores", "fewshot_folds", "evaluate_fewshot"]

#: what each episode scores
METHODS = ("enrolled", "zero_shot", "svm")
_KEYS = ("ua", "wa", "macro_f1")


def t_interval(values: Sequence[float]) -> dict:
    """Mean and the half-width of the 95 % t-interval of ``values`` (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean()) if len(v) else float("nan")
    if len(v) < 2:
        return {"mean": mean, "ci95": 0.0, "n": int(len(v))}
    from scipy.stats import t

    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": mean, "ci95": half, "n": int(len(v))}


def fold_inputs(model, test: Sequence, *, progress: bool = False) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(base labels, single-utterance probabilities [n, c], embeddings [n, d])`` of a fitted model on ``test``."""
    if not model.has_embedding:
        family = getattr(model, "family", "") or type(model).__name__
        raise ConfigError(
            f"fewshot needs a model with an embedding to build prototypes in; family {family!r} has none "
            "(use a features or soundnet recipe)"
        )
    test = list(test)
    base = np.asarray(model.predict_proba_utterances(test, adapt=False, progress=progress), dtype=float)
    emb = np.asarray(model.embed_utterances(test, progress=progress), dtype=float)
    return [str(lab) for lab in model.labels], base, emb


def _svm_predict(x_support, y_support, x_query):
    """Predictions of a linear SVM (balanced) trained on the support rows, in the embedding space as it is
    (already standardised with training statistics; re-standardising on K shots per class amplifies noise)."""
    from sklearn.svm import LinearSVC

    classes = sorted(set(y_support))
    if len(classes) < 2:
        return [classes[0]] * len(x_query)
    est = LinearSVC(C=1.0, class_weight="balanced", max_iter=5000)
    return list(est.fit(x_support, y_support).predict(x_query))


def episode_scores(
    base_proba: np.ndarray,
    base_labels: Sequence[str],
    embeddings: np.ndarray,
    y: Sequence[str],
    *,
    shots: int,
    episodes: int = 10,
    seed: int = 0,
    alpha: float = ALPHA,
    scale: float = SCALE,
    temperature: float | None = None,
    shrink: float = SHRINK,
    cov_shrink: float = COV_SHRINK,
    svm: bool = True,
    keep_predictions: bool = False,
) -> dict:
    """Score ``episodes`` K-shot episodes on one held-out part (see the module docstring).

    ``base_proba`` [n, c] and ``embeddings`` [n, d] are the fold model's outputs on the held-out
    clips, ``y`` their true labels. Returns ``{method: {ua|wa|macro_f1: {mean, ci95, n, values}}}``
    (``enrolled`` also has ``nll``, the mean negative log-likelihood of the true class)
    plus ``n_support``/``n_query`` and, with ``keep_predictions``, episode 0's query indices,
    labels and probabilities (``"episode0"``).
    """
    y = np.array([str(v) for v in y], dtype=object)
    base_labels = [str(c) for c in base_labels]
    scores = {m: {k: [] for k in _KEYS} for m in METHODS if svm or m != "svm"}
    nll: list[float] = []
    out: dict = {}
    for e in range(int(episodes)):
        try:
            support = sample_support(y, shots, seed=seed + e)
        except ValueError as exc:
            raise ConfigError(f"fewshot:{shots}: the held-out clips cannot give an episode: {exc}") from None
        query = np.setdiff1d(np.arange(len(y)), support)
        if not len(query):
            raise ConfigError(f"fewshot:{shots}: no held-out clip is left to score after taking the support set")
        classes, protos, variance, residuals = fit_prototypes(embeddings[support], y[support], shrink=shrink)
        labels, p = enrolled_proba(
            base_proba[query], base_labels, embeddings[query], protos, classes, alpha=alpha, scale=scale,
            temperature=temperature, variance=variance, residuals=residuals, cov_shrink=cov_shrink,
        )  # fmt: skip
        all_labels = sorted(set(labels) | set(y.tolist()))
        truth = y[query].tolist()
        col = {lab: i for i, lab in enumerate(labels)}
        hit = [p[i, col[t]] if t in col else 0.0 for i, t in enumerate(truth)]
        nll.append(float(-np.mean(np.log(np.maximum(hit, 1e-12)))))
        preds = {
            "enrolled": [labels[i] for i in p.argmax(axis=1)],
            "zero_shot": [base_labels[i] for i in base_proba[query].argmax(axis=1)],
        }
        if svm:
            preds["svm"] = _svm_predict(embeddings[support], y[support].tolist(), embeddings[query])
        for m, pred in preds.items():
            mm = metrics(truth, pred, all_labels)
            for k in _KEYS:
                scores[m][k].append(mm[k])
        if e == 0:
            out.update(n_support=int(len(support)), n_query=int(len(query)))
            if keep_predictions:
                out["episode0"] = {"query": query, "labels": labels, "proba": p}
    for m, by_key in scores.items():
        out[m] = {k: {**t_interval(v), "values": [float(x) for x in v]} for k, v in by_key.items()}
    out["enrolled"]["nll"] = {**t_interval(nll), "values": nll}
    return out


def fewshot_folds(utterances: Sequence, shots: int = 1):
    """The held-out parts (:class:`~serkit.evaluation.protocols.FewShot`): one per corpus when there are
    several, else one per speaker; returns ``(folds, "corpus" | "speaker")``."""
    from .protocols import FewShot

    utterances = list(utterances)
    several = len({str(u.corpus) for u in utterances}) >= 2
    return FewShot(shots).folds(utterances), ("corpus" if several else "speaker")


def _pool(fold_scores: list[dict], methods) -> dict:
    """Per method and metric: the mean over folds of each episode's score, with its t-interval."""
    out = {}
    for m in methods:
        out[m] = {}
        for k in _KEYS:
            per_episode = np.mean([f[m][k]["values"] for f in fold_scores], axis=0)
            out[m][k] = {**t_interval(per_episode), "values": [float(x) for x in per_episode]}
    return out


def evaluate_fewshot(
    model_factory: Callable[[], object],
    utterances: Sequence,
    *,
    shots: int,
    episodes: int = 10,
    seed: int = 0,
    recipe=None,
    progress: bool = True,
    alpha: float = ALPHA,
    scale: float = SCALE,
    temperature: float | None = None,
    shrink: float = SHRINK,
):
    """Run the ``fewshot:K`` protocol (module docstring) and return a :class:`~serkit.evaluation.report.Report`.

    The report's headline metrics and predictions are episode 0's enrolled predictions pooled over
    the folds; ``Report.fewshot`` holds the means over episodes with 95 % intervals for the
    enrolled model, zero-shot and the K-shot SVM, per fold and pooled.
    """
    import pandas as pd

    from .report import Report, prediction_row

    if int(episodes) < 1:
        raise ConfigError(f"episodes must be at least 1, got {episodes}")
    started = time.perf_counter()
    utterances = list(utterances)
    folds, held_out = fewshot_folds(utterances, shots)
    fold_scores, fold_dicts, rows = [], [], []
    labels_all: set = {str(u.label) for u in utterances}
    normalisation = None
    bar = None
    if progress:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(folds), desc=f"evaluate fewshot:{shots}", unit="fold", file=sys.stderr)
    try:
        for k, f in enumerate(folds):
            train = [utterances[i] for i in f.train_idx]
            test = [utterances[i] for i in f.test_idx]
            model = model_factory()
            t0 = time.perf_counter()
            model = model.fit(train, progress=progress) or model
            t1 = time.perf_counter()
            normalisation = normalisation or str(model.normalisation)
            base_labels, base, emb = fold_inputs(model, test, progress=progress)
            y = [str(u.label) for u in test]
            s = episode_scores(
                base, base_labels, emb, y, shots=shots, episodes=episodes, seed=seed, alpha=alpha, scale=scale,
                temperature=temperature, shrink=shrink, keep_predictions=True,
            )  # fmt: skip
            fold_scores.append(s)
            ep = s.pop("episode0")
            labels_all |= set(ep["labels"])
            truth = [y[i] for i in ep["query"]]
            pred = [ep["labels"][i] for i in ep["proba"].argmax(axis=1)]
            fm = metrics(truth, pred, sorted(set(ep["labels"]) | set(truth)))
            fold_dicts.append(
                {
                    "fold": k,
                    "test_speakers": list(f.test_speakers),
                    "test_corpora": sorted({str(u.corpus) for u in test}),
                    "n_train": len(f.train_idx),
                    "n_test": len(ep["query"]),
                    "n_support": s["n_support"],
                    "ua": fm["ua"],
                    "wa": fm["wa"],
                    "macro_f1": fm["macro_f1"],
                    "fit_seconds": round(t1 - t0, 3),
                    "predict_seconds": round(time.perf_counter() - t1, 3),
                    "missing_train_labels": sorted(set(y) - set(base_labels)),
                    "fewshot": {m: {key: s[m][key] for key in _KEYS} for m in METHODS},
                }
            )
            for i, row, pr in zip(ep["query"], ep["proba"], pred):
                rows.append(prediction_row(test[i], fold=k, true=y[i], pred=pr, labels=ep["labels"], proba=row))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    labels = sorted(labels_all)
    columns = ["id", "path", "start", "end", "speaker", "corpus", "fold", "true", "pred", *[f"p_{x}" for x in labels]]
    predictions = pd.DataFrame(rows, columns=columns).fillna({f"p_{x}": 0.0 for x in labels})
    pooled = metrics(predictions["true"].tolist(), predictions["pred"].tolist(), labels)
    fewshot = {
        "shots": int(shots),
        "episodes": int(episodes),
        "seed": int(seed),
        "held_out": held_out,
        "rule": {
            "alpha": float(alpha),
            "scale": float(scale),
            "shrink": float(shrink),
            "cov_shrink": float(COV_SHRINK),
            "temperature": rule_temperature(1) if temperature is None else float(temperature),
            "one_shot_temperature": rule_temperature(None) if temperature is None else float(temperature),
        },
        "pooled": _pool(fold_scores, METHODS),
        "note": "means over episodes with 95 % t-intervals; single-utterance predictions; each episode's "
        "support clips are excluded from its scored clips; the headline numbers are episode 0",
    }
    return Report(
        protocol=f"fewshot:{int(shots)}",
        speaker_dependent=False,
        labels=labels,
        metrics=pooled,
        folds=fold_dicts,
        predictions=predictions,
        recipe=recipe,
        normalisation=normalisation,
        seconds=time.perf_counter() - started,
        protocol_info={
            "name": f"fewshot:{int(shots)}",
            "speaker_independent": True,
            "shots": int(shots),
            "episodes": int(episodes),
            "held_out": held_out,
        },
        extra={
            "n_input_utterances": len(utterances),
            "n_input_speakers": len({str(u.speaker) for u in utterances}),
            "corpora": sorted({str(u.corpus) for u in utterances}),
        },
        fewshot=fewshot,
    )

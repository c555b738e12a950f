"""The evaluation loop: fit a fresh model per fold of a protocol, predict each fold once per mode,
pool the test predictions into one :class:`~serkit.evaluation.report.Report`.

The modes come from the model's declared capabilities (:class:`serkit.models.base.Classifier`):
a model that ``adapts_to_speakers`` is scored with ``adapt=True`` (its headline mode, the default
of ``adapt=None``) and, when both are asked for, with ``adapt=False``; any other model with
``adapt=False`` only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..calibration import ece
from ..errors import ConfigError, ModelError
from .metrics import metrics
from .protocols import FewShot, parse_protocol
from .report import Report, prediction_row

__all__ = ["evaluate", "fit_temperatures", "out_of_fold", "inner_protocol"]

#: adapted (per-speaker statistics), single utterance (training statistics only)
MODES = ("speaker", "none")
#: single utterance after unsupervised domain adaptation to the fold's test audio (``domain_adapt``)
DOMAIN_MODE = "domain"


def _run_fold(
    model_factory: Callable,
    train: list,
    test: list,
    *,
    report_both: bool,
    progress: bool,
    calibrate: bool = False,
    domain_adapt=None,
    domain_fit=None,
) -> dict:
    """Fit a fresh model on ``train`` and predict ``test`` once per mode; module-level so joblib workers can run it.

    With ``calibrate``, temperatures are fitted on out-of-fold predictions of ``train``'s own speakers
    (:func:`fit_temperatures`) and applied to ``test``'s probabilities; the raw ones are kept too.
    """
    temperatures = fit_temperatures(model_factory, train, report_both=report_both)["temperature"] if calibrate else {}
    model = model_factory()
    t0 = time.perf_counter()
    fitted = model.fit(train, progress=progress)
    if fitted is not None:  # estimator manners say fit returns self; tolerate those that return None
        model = fitted
    t1 = time.perf_counter()
    labels = [str(lab) for lab in model.labels]
    adapts = bool(model.adapts_to_speakers)
    headline = "speaker" if adapts else "none"  # what adapt=None means for this model
    modes = MODES if report_both and adapts else (headline,)
    probs = {mode: model.predict_proba_utterances(test, adapt=mode == "speaker", progress=progress) for mode in modes}
    if domain_adapt is not None:  # transductive: the fold's model adapted to its test audio, labels unused
        model = domain_adapt(model, test)
        probs[DOMAIN_MODE] = model.predict_proba_utterances(test, adapt=False, progress=progress)
    if domain_fit is not None:  # transductive: a second model trained with the fold's test audio as its target
        adapted = domain_fit(model_factory, train, test)
        probs[DOMAIN_MODE] = adapted.predict_proba_utterances(test, adapt=False, progress=progress)
    t2 = time.perf_counter()
    for mode, p in probs.items():
        p = np.asarray(p, dtype=float)
        if p.shape != (len(test), len(labels)):
            raise ModelError(
                f"{type(model).__name__}.predict_proba_utterances returned shape {p.shape} for {len(test)} "
                f"utterances and {len(labels)} labels; it must return [n_utterances, n_labels] in model.labels order"
            )
        probs[mode] = p
    raw = None
    if calibrate:
        from ..calibration import apply_temperature

        raw = probs
        probs = {
            mode: apply_temperature(p, temperatures[mode]) if mode in temperatures else p for mode, p in raw.items()
        }
    return {
        "labels": labels,
        "probs": probs,
        "raw_probs": raw,
        "temperatures": temperatures,
        "headline": headline,
        "fit_seconds": t1 - t0,
        "predict_seconds": t2 - t1,
        "normalisation": str(model.normalisation),
    }


def _align(p: np.ndarray, model_labels: list[str], labels: list[str]) -> np.ndarray:
    """Reorder probability columns by label name; a class the fold's model never saw gets 0."""
    out = np.zeros((p.shape[0], len(labels)))
    index = {lab: i for i, lab in enumerate(labels)}
    for j, lab in enumerate(model_labels):
        out[:, index[lab]] = p[:, j]
    return out


def inner_protocol(utterances: Sequence, k: int = 5) -> str:
    """The protocol temperatures are fitted with: held-out corpora when there are several, else
    ``speaker-kfold:K`` over the speakers (K = ``k``, or fewer when there are fewer speakers)."""
    corpora = {str(u.corpus) for u in utterances}
    if len(corpora) > 1:
        return "loco"
    n_speakers = len({str(u.speaker) for u in utterances})
    if n_speakers < 2:
        raise ConfigError(
            f"calibration needs held-out training speakers, but the training data has {n_speakers} speaker; "
            "give utterances of at least 2 speakers (better 5 or more) or train without --calibrate"
        )
    return f"speaker-kfold:{min(k, n_speakers)}"


def out_of_fold(
    model_factory: Callable,
    utterances: Sequence,
    protocol,
    *,
    report_both: bool = True,
    seed: int = 0,
    domain_adapt: Callable | None = None,
):
    """Out-of-fold probabilities of every utterance under ``protocol``, per mode (``domain_adapt``:
    also each fold's model adapted to its test audio, mode ``"domain"``, as in :func:`evaluate`).

    Returns ``(labels, y, probs, rows)``: the label order, the true class index of each utterance
    (``[shape=(n,)]``, the order of the protocol's test folds), ``{mode: [shape=(n, n_labels)]}``
    and the utterances in that order.
    """
    utterances = list(utterances)
    folds = parse_protocol(protocol, seed=seed).folds(utterances)
    results, tests = [], []
    for f in folds:
        train = [utterances[i] for i in f.train_idx]
        tests.append([utterances[i] for i in f.test_idx])
        results.append(
            _run_fold(
                model_factory, train, tests[-1], report_both=report_both, progress=False, domain_adapt=domain_adapt
            )
        )
    labels = list(results[0]["labels"])
    labels += sorted(({lab for r in results for lab in r["labels"]} | {str(u.label) for u in utterances}) - set(labels))
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[str(u.label)] for test in tests for u in test], dtype=np.int64)
    modes = [m for m in (*MODES, DOMAIN_MODE) if all(m in r["probs"] for r in results)]
    probs = {m: np.concatenate([_align(r["probs"][m], r["labels"], labels) for r in results]) for m in modes}
    return labels, y, probs, [u for test in tests for u in test]


def fit_temperatures(
    model_factory: Callable,
    utterances: Sequence,
    *,
    report_both: bool = True,
    k: int = 5,
    domain_adapt: Callable | None = None,
    domain_mode: str = "voices",
    domain_min_clips: int = 1,
) -> dict:
    """Temperature scaling for a model trained on ``utterances``, one temperature per mode.

    ``domain_adapt`` (``adaptation.fold_adapter`` with ``voices``, from ``api.train``): each inner
    fold's model is also adapted to its held-out part's audio and those predictions get their own
    temperature, mode ``domain_mode`` — what a model adapted by voice groups applies to its single clips;
    left out (no such temperature) when an inner fold holds fewer than ``domain_min_clips`` clips.

    Fitted (:func:`serkit.calibration.fit_temperature`) on out-of-fold predictions of held-out
    *training* speakers (:func:`inner_protocol`: held-out corpora when several are trained together,
    else K speaker-grouped folds). Returns the ``model.json`` ``calibration`` record: ``method,
    temperature {mode: T}, fitted_on, ece_before {mode}, ece_after {mode}`` (ECE on those same
    out-of-fold predictions; T is one number per mode, so the in-sample gain is nearly all real)
    and, when the inner folds are held-out corpora, ``by_corpus {corpus: {n, ua {mode}, ece_after
    {mode}}}``: how each training corpus fared while unseen.
    """
    from ..calibration import apply_temperature, fit_temperature

    protocol = inner_protocol(utterances, k)
    if domain_adapt is not None:
        sizes = [len(f.test_idx) for f in parse_protocol(protocol).folds(list(utterances))]
        if min(sizes) < domain_min_clips:
            domain_adapt = None
    labels, y, probs, rows = out_of_fold(
        model_factory, utterances, protocol, report_both=report_both, domain_adapt=domain_adapt
    )
    if DOMAIN_MODE in probs:
        probs[domain_mode] = probs.pop(DOMAIN_MODE)
    temperature = {m: fit_temperature(p, y) for m, p in probs.items()}
    by_corpus = {}
    corpora = np.array([str(u.corpus) for u in rows])
    if protocol == "loco":  # each corpus was one held-out fold: how an unseen corpus fares, per mode
        for c in sorted(set(corpora)):
            keep = corpora == c
            true = [labels[i] for i in y[keep]]
            by_corpus[c] = {
                "n": int(keep.sum()),
                "ua": {
                    m: metrics(true, [labels[i] for i in p[keep].argmax(1)], labels)["ua"] for m, p in probs.items()
                },
                "ece_after": {m: ece(apply_temperature(p[keep], temperature[m]), y[keep]) for m, p in probs.items()},
            }
    return {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": {
            "protocol": protocol,
            "n_utterances": int(len(y)),
            "n_speakers": len({str(u.speaker) for u in utterances}),
            "corpora": sorted({str(u.corpus) for u in utterances}),
        },
        "ece_before": {m: ece(p, y) for m, p in probs.items()},
        "ece_after": {m: ece(apply_temperature(p, temperature[m]), y) for m, p in probs.items()},
        **({"by_corpus": by_corpus} if by_corpus else {}),
    }


def evaluate(
    model_factory: Callable[[], object],
    utterances: Sequence,
    protocol="loso",
    *,
    report_both: bool = False,
    recipe: dict | str | None = None,
    normalisation: str | None = None,
    seed: int = 0,
    progress: bool = True,
    n_jobs: int = 1,
    calibrate: bool = False,
    domain_adapt: Callable | None = None,
    domain_method: str | None = None,
    domain_fit: Callable | None = None,
) -> Report:
    """Fit a fresh model per fold of ``protocol`` and score the pooled test predictions.

    Parameters
    ----------
    model_factory : callable
        ``model_factory() -> Classifier`` (unfitted); called once per fold so no fold sees another's
        training. It must be picklable (a module-level function or ``functools.partial``) when ``n_jobs != 1``.
    utterances : sequence of Utterance
        Labelled utterances with speakers; labels must already be mapped onto one label set.
    protocol : str or Protocol
        See :func:`parse_protocol`. Speaker-independent ``"loso"`` by default.
    report_both : bool
        For a model that ``adapts_to_speakers``: predict each fold with ``adapt=True`` and with
        ``adapt=False`` (one pass each) and store both pooled results in ``Report.adaptation``; the
        headline numbers are the adapted ones (the model's default, ``adapt=None``). A model that does
        not adapt has one mode: ``Report.adaptation`` holds only ``"none"``, with a note in
        ``Report.extra["notes"]``.
    recipe, normalisation : optional
        Recorded in the report. ``normalisation`` defaults to the first fold's model's declared
        ``normalisation``.
    seed : int
        Seed of the protocol's shuffles (``speaker-kfold``, ``random-split``); models seed themselves.
    progress : bool
        Show a progress bar over folds on stderr (and let models show theirs when ``n_jobs == 1``).
    n_jobs : int
        Folds run in parallel processes when ``!= 1`` (``-1`` = all cores, via joblib).
    calibrate : bool
        Temperature-scale each fold's probabilities with temperatures fitted on that fold's
        *training* speakers only (:func:`fit_temperatures`), so the report's calibration numbers are
        honest; ``Report.calibration["before"]`` keeps the uncalibrated ones.
    domain_adapt : callable, optional
        ``domain_adapt(fitted_model, test_utterances) -> model``: unsupervised domain adaptation to
        the fold's test audio (its labels unused), e.g. :func:`serkit.adaptation.fold_adapter`. The
        adapted model's single-utterance predictions are scored as mode ``"domain"`` in
        ``Report.adaptation`` (next to the unadapted modes, which keep the headline) and the report
        is marked transductive in ``Report.extra["transductive"]``. Picklable when ``n_jobs != 1``.
    domain_method : str, optional
        The method's name, recorded in the report.
    domain_fit : callable, optional
        ``domain_fit(model_factory, train_utterances, test_utterances) -> fitted model``: train-time
        domain adaptation with the fold's test audio as the unlabelled target, e.g.
        :func:`serkit.adaptation.fold_trainer`; a second model per fold, scored (single utterance)
        as mode ``"domain"`` exactly like ``domain_adapt``, while the unadapted model keeps the
        headline. Picklable when ``n_jobs != 1``.

    Returns
    -------
    Report
        Labels are the first fold's model's ``labels`` order, followed (sorted) by any label only other
        folds' models or the true labels have. A fold's probability columns are aligned by label name;
        a class missing from that fold's training set gets probability 0 and is listed in the fold's
        ``missing_train_labels``.
    """
    started = time.perf_counter()
    utterances = list(utterances)
    proto = parse_protocol(protocol, seed=seed)
    if isinstance(proto, FewShot):  # train once per held-out part, then enrolment episodes
        if calibrate or domain_adapt is not None:
            raise ConfigError("the fewshot protocol runs without --calibrate and --adapt; drop them")
        from .fewshot import evaluate_fewshot

        return evaluate_fewshot(
            model_factory, utterances, shots=proto.k, episodes=proto.episodes, seed=proto.seed, recipe=recipe,
            progress=progress,
        )  # fmt: skip
    folds = proto.folds(utterances)

    jobs = [([utterances[i] for i in f.train_idx], [utterances[i] for i in f.test_idx]) for f in folds]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(folds), desc=f"evaluate {proto.name}", unit="fold", file=sys.stderr)
    results: list[dict] = []
    try:
        if n_jobs == 1:
            for k, (train, test) in enumerate(jobs):
                if bar is not None:
                    bar.set_postfix_str(f"testing {', '.join(folds[k].test_speakers)[:40]}", refresh=True)
                results.append(
                    _run_fold(
                        model_factory,
                        train,
                        test,
                        report_both=report_both,
                        progress=progress,
                        domain_adapt=domain_adapt,
                        domain_fit=domain_fit,
                        calibrate=calibrate,
                    )
                )
                if bar is not None:
                    bar.update(1)
        else:
            from joblib import Parallel, delayed

            # Nested progress bars from several processes would garble the terminal; only the fold bar shows.
            parallel = Parallel(n_jobs=n_jobs, return_as="generator")
            for res in parallel(
                delayed(_run_fold)(
                    model_factory,
                    train,
                    test,
                    report_both=report_both,
                    progress=False,
                    domain_adapt=domain_adapt,
                    domain_fit=domain_fit,
                    calibrate=calibrate,
                )
                for train, test in jobs
            ):
                results.append(res)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    labels = list(results[0]["labels"])
    seen = set(labels)
    extra_labels = {lab for r in results for lab in r["labels"]} | {str(u.label) for u in utterances}
    labels += sorted(extra_labels - seen)

    modes = list(results[0]["probs"])
    aligned = {mode: [] for mode in modes}
    raw_aligned = {mode: [] for mode in modes}
    rows, fold_dicts = [], []
    for k, (f, r) in enumerate(zip(folds, results)):
        test = jobs[k][1]
        y_true = [str(u.label) for u in test]
        for mode in modes:
            aligned[mode].append(_align(r["probs"][mode], r["labels"], labels))
            if r.get("raw_probs") is not None:
                raw_aligned[mode].append(_align(r["raw_probs"][mode], r["labels"], labels))
        p = aligned[r["headline"]][-1]
        y_pred = [labels[i] for i in p.argmax(axis=1)]
        fm = metrics(y_true, y_pred, labels)
        by_mode = (
            {
                mode: metrics(y_true, [labels[i] for i in aligned[mode][-1].argmax(axis=1)], labels)["ua"]
                for mode in modes
            }
            if len(modes) > 1
            else {}
        )
        index = {lab: i for i, lab in enumerate(labels)}
        y_idx = np.array([index[t] for t in y_true], dtype=np.int64)
        ece_by_mode = {mode: round(ece(aligned[mode][-1], y_idx), 4) for mode in modes}
        fold_dicts.append(
            {
                "fold": k,
                "test_speakers": list(f.test_speakers),
                "test_corpora": sorted({str(u.corpus) for u in test}),
                "n_train": len(f.train_idx),
                "n_test": len(f.test_idx),
                "ua": fm["ua"],
                "wa": fm["wa"],
                "macro_f1": fm["macro_f1"],
                "fit_seconds": round(r["fit_seconds"], 3),
                "predict_seconds": round(r["predict_seconds"], 3),
                "missing_train_labels": sorted(set(labels) - set(r["labels"])),
                **({"ua_by_mode": by_mode} if by_mode else {}),
                "ece_by_mode": ece_by_mode,
                **({"temperature": dict(r["temperatures"])} if r.get("temperatures") else {}),
            }
        )
        for u, t, pr, row in zip(test, y_true, y_pred, p):
            rows.append(prediction_row(u, fold=k, true=t, pred=pr, labels=labels, proba=row))

    predictions = pd.DataFrame(
        rows,
        columns=[
            "id",
            "path",
            "start",
            "end",
            "speaker",
            "corpus",
            "fold",
            "true",
            "pred",
            *[f"p_{lab}" for lab in labels],
        ],
    )
    pooled = metrics(predictions["true"].tolist(), predictions["pred"].tolist(), labels)

    headline = results[0]["headline"]
    adaptation = None
    notes = {}
    transductive = domain_adapt is not None or domain_fit is not None
    if report_both or transductive:
        if report_both and len([m for m in modes if m != DOMAIN_MODE]) == 1:
            notes["adaptation"] = (
                f"the model does not adapt to speakers (normalisation: {results[0]['normalisation']}); "
                "only single-utterance predictions were scored"
            )
        y_true = predictions["true"].tolist()
        adaptation = {}
        for mode in modes:
            p = np.concatenate(aligned[mode])
            am = metrics(y_true, [labels[i] for i in p.argmax(axis=1)], labels)
            adaptation[mode] = {
                "ua": am["ua"],
                "wa": am["wa"],
                "macro_f1": am["macro_f1"],
                "headline": mode == headline,
            }

    calibration = _calibration(labels, predictions["true"].tolist(), aligned, raw_aligned if calibrate else None)

    return Report(
        calibration=calibration,
        protocol=proto.name,
        speaker_dependent=not proto.speaker_independent,
        labels=labels,
        metrics=pooled,
        folds=fold_dicts,
        predictions=predictions,
        recipe=recipe,
        normalisation=normalisation if normalisation is not None else results[0]["normalisation"],
        seconds=time.perf_counter() - started,
        adaptation=adaptation,
        protocol_info=proto.to_dict(),
        extra={
            "n_input_utterances": len(utterances),
            "n_input_speakers": len({str(u.speaker) for u in utterances}),
            "corpora": sorted({str(u.corpus) for u in utterances}),
            **({"notes": notes} if notes else {}),
            **(
                {
                    "transductive": {
                        "method": domain_method or "domain",
                        "mode": DOMAIN_MODE,
                        "note": "each fold's model was adapted to the unlabelled audio of its own test set "
                        "(transductive); the unadapted modes are reported alongside",
                        **(
                            {
                                "when": "training",
                                "how": "a second model per fold trained with the test audio as its target",
                            }
                            if domain_fit is not None
                            else {}
                        ),
                    }
                }
                if transductive
                else {}
            ),
        },
    )


def _calibration(labels: list[str], y_true: list[str], aligned: dict, raw: dict | None) -> dict:
    """The report's ``calibration``: per mode ECE, Brier, NLL, reliability bins and coverage table
    of the pooled test probabilities; with ``raw`` (``evaluate(calibrate=True)``) the uncalibrated
    ECE, Brier and NLL under ``"before"``."""
    from ..calibration import summary

    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[t] for t in y_true], dtype=np.int64)
    out: dict = {"calibrated": raw is not None, "modes": {m: summary(np.concatenate(p), y) for m, p in aligned.items()}}
    if raw is not None:
        out["before"] = {
            m: {k: v for k, v in summary(np.concatenate(p), y).items() if k in ("ece", "brier", "nll")}
            for m, p in raw.items()
        }
    return out

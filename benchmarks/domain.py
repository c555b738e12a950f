"""Audio unlike the training data: domain adaptation, few-shot enrolment and calibration, one table.

Usage::

    python benchmarks/domain.py                                  # every corpus under $SERKIT_DATA
    python benchmarks/domain.py --corpora emodb,tess,ravdess --max-per-corpus 0 --jobs 2
    python benchmarks/domain.py --out runs/domain.json

Leave-one-corpus-out over the corpora (6 classes; a held-out corpus is scored on the classes it
has): for each held-out corpus the recipe (``default``) is trained on all the others, then

* **no adaptation** — single utterance (training statistics only) and speaker-adapted (each test
  speaker standardised with its own unlabelled clips, :mod:`serkit.speakers`);
* **voices** (``serkit adapt``, its default for this recipe) and **CORAL** (``serkit adapt
  --adapt-method coral``) — the fold's model adapted to the held-out corpus' unlabelled audio
  (transductive: the test audio without its labels), single utterance;
* **few-shot** (``serkit enrol``) — K = 1, 5, 10, 20 labelled clips per class of the held-out
  corpus as the support set, the rest scored; against zero-shot (the same model unenrolled, on
  the same query clips) and a linear SVM trained on the K shots alone in the same embedding space;
  ``--episodes`` repeats, mean and 95 % t-interval;
* **calibration** — ECE (15 bins, top label) before and after temperature scaling, single
  utterance, speaker-adapted, voice-group and CORAL modes, pooled over folds. A fold's temperatures are fitted the way
  ``serkit train --calibrate`` fits them: on out-of-fold predictions of its *training* corpora,
  each held out in turn (models trained on all corpora but the fold's and that one), never on
  the held-out corpus. A model trained without corpora {i, j} serves both fold i and fold j.

``--cache DIR`` keeps every fitted model (keyed by recipe and training clips) for the next run and
for ``benchmarks/voices.py``.

``--max-per-corpus N`` keeps at most N clips of each corpus (balanced over speaker and class,
seeded), for every role — training, target audio and test — so that the 7 × 6 / 2 + 7 fits fit on a
2-core machine; ``0`` keeps everything. Settings are the recipe's; nothing here is tuned on a
held-out corpus.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from serkit.corpora import SHARED_FOLDERS as CORPORA  # adapter name → folder under $SERKIT_DATA

DATA = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

SHOTS = (1, 5, 10, 20)
MODES = ("none", "speaker", "voices", "coral")


def cap(utterances, n: int, seed: int = 0) -> list:
    """At most ``n`` utterances, taken round-robin over (speaker, class) groups in a seeded order."""
    if not n or len(utterances) <= n:
        return list(utterances)
    rng = np.random.default_rng(seed)
    groups = defaultdict(list)
    for u in utterances:
        groups[(str(u.speaker), str(u.label))].append(u)
    order = [groups[k] for k in sorted(groups)]
    for g in order:
        rng.shuffle(g)
    out, i = [], 0
    while len(out) < n:
        for g in order:
            if i < len(g) and len(out) < n:
                out.append(g[i])
        i += 1
    return out


def missing_corpora(names) -> list[str]:
    """Those of ``names`` that are no adapter here or have no folder under :data:`DATA`."""
    return [c for c in names if c not in CORPORA or not (DATA / CORPORA[c]).is_dir()]


def named_corpora(text: str, prog: str) -> list[str] | None:
    """The comma-separated corpus names of ``text``; ``None`` (after saying which, on stderr) when one is
    no adapter here or has no folder under :data:`DATA`."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    missing = missing_corpora(names)
    if missing:
        print(f"{prog}: unknown or missing corpora {missing} under {DATA}; set SERKIT_DATA", file=sys.stderr)
        return None
    return names


def load_capped(names, max_per_corpus: int, *, say: bool = True) -> dict:
    """Corpus name → its 6-class clips (audio checked), at most ``max_per_corpus`` (:func:`cap`)."""
    from serkit.corpora import load_corpus

    by = {}
    for c in names:
        utts = load_corpus(f"{c}:{DATA / CORPORA[c]}", label_set="6class", check_audio=True)
        by[c] = cap(utts, max_per_corpus)
        if say:
            print(f"{c}: {len(by[c])} of {len(utts)} clips, {len({u.speaker for u in by[c]})} speakers", flush=True)
    return by


def fitted(recipe_name: str, train, cache: str | None = None):
    """The recipe fitted on ``train``; with ``cache`` (a folder), loaded from / saved to it (joblib,
    keyed by the recipe and the training clips' ids), so reruns and other benchmarks reuse fits."""
    import joblib

    from serkit.models import build_model
    from serkit.recipe import load_recipe

    path = None
    if cache:
        key = hashlib.sha1("\n".join(sorted(str(u.id) for u in train)).encode()).hexdigest()[:16]
        path = Path(cache) / f"{recipe_name}-{key}.joblib"
        if path.exists():
            return joblib.load(path)
    model = build_model(load_recipe(recipe_name).model).fit(train, progress=False)
    if path is not None:
        import io

        from serkit.cache import atomic_write_bytes

        buf = io.BytesIO()
        joblib.dump(model, buf)
        atomic_write_bytes(path, buf.getvalue())
    return model


def _predict(model, clips) -> dict:
    """Probabilities of ``clips`` per mode: single utterance, speaker-adapted, and adapted to ``clips``
    by voice groups and by CORAL."""
    from serkit.adaptation import adapt_classifier

    out = {
        "none": model.predict_proba_utterances(clips, adapt=False, progress=False),
        "speaker": model.predict_proba_utterances(clips, adapt=True, progress=False),
    }
    for method in ("voices", "coral"):
        adapted = adapt_classifier(copy.deepcopy(model), clips, method=method)
        out[method] = adapted.predict_proba_utterances(clips, adapt=False, progress=False)
    return out


def run_fold(
    recipe_name: str,
    train,
    tests: dict,
    fewshot: dict | None,
    outer: bool,
    coral_train: bool = True,
    cache: str | None = None,
) -> dict:
    """Fit the recipe on ``train``; per held-out corpus in ``tests`` its probabilities per mode.

    An ``outer`` fold (one held-out corpus) also gets train-time CORAL (a second model, fitted with
    the held-out corpus' unlabelled audio as its target) and the few-shot scores.
    """
    from serkit.adaptation import fit_with_target
    from serkit.models import build_model
    from serkit.recipe import load_recipe

    recipe = load_recipe(recipe_name)
    t0 = time.perf_counter()
    model = fitted(recipe_name, train, cache)
    out = {"labels": list(model.labels), "fit_seconds": time.perf_counter() - t0, "probs": {}}
    for corpus, clips in tests.items():
        out["probs"][corpus] = _predict(model, clips)
    if outer:
        ((corpus, clips),) = tests.items()
        if coral_train:
            trained, _ = fit_with_target(build_model(recipe.model), train, clips, method="coral")
            out["probs"][corpus]["coral-train"] = trained.predict_proba_utterances(clips, adapt=False, progress=False)
        if fewshot is not None:
            out["fewshot"] = fewshot_scores(model, clips, **fewshot)
    return out


def run_neural_fold(recipe_name: str, overrides: list[str], train, test) -> dict:
    """A network trained on ``train``: single-utterance probabilities on ``test`` unadapted, after AdaBN
    to ``test``'s audio, and of two more networks trained with it as target (Deep CORAL, MMD)."""
    from serkit.adaptation import adapt_classifier, fit_with_target
    from serkit.models import build_model
    from serkit.recipe import load_recipe

    recipe = load_recipe(recipe_name, overrides)
    t0 = time.perf_counter()
    model = build_model(recipe.model).fit(train, progress=False)
    probs = {"none": model.predict_proba_utterances(test, adapt=False, progress=False)}
    adapted = adapt_classifier(copy.deepcopy(model), test, method="adabn")
    probs["adabn"] = adapted.predict_proba_utterances(test, adapt=False, progress=False)
    for method in ("deep-coral", "mmd"):
        trained, _ = fit_with_target(build_model(recipe.model), train, test, method=method)
        probs[method] = trained.predict_proba_utterances(test, adapt=False, progress=False)
    return {"labels": list(model.labels), "probs": probs, "seconds": time.perf_counter() - t0}


def fewshot_scores(model, clips, *, shots, episodes: int, seed: int) -> dict:
    """Per K: UA (mean, 95 % interval over episodes) of the enrolled model, zero-shot and an SVM on the K shots."""
    from serkit.errors import ConfigError
    from serkit.evaluation.fewshot import episode_scores, fold_inputs

    labels, proba, emb = fold_inputs(model, clips)
    y = [str(u.label) for u in clips]
    out = {}
    for k in shots:
        try:
            r = episode_scores(proba, labels, emb, y, shots=k, episodes=episodes, seed=seed)
        except ConfigError as exc:  # a class with fewer than K + 1 clips: no episode at this K
            out[str(k)] = {"skipped": str(exc)}
            continue
        out[str(k)] = {
            m: {"mean": r[m]["ua"]["mean"], "ci95": r[m]["ua"]["ci95"]} for m in ("zero_shot", "svm", "enrolled")
        }
    return out


def _ua(labels, probs, clips) -> float:
    from serkit.metrics import unweighted_accuracy

    return unweighted_accuracy([str(u.label) for u in clips], [labels[i] for i in np.asarray(probs).argmax(1)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated adapter names (default: all)")
    ap.add_argument("--max-per-corpus", type=int, default=700)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--no-fewshot", action="store_true")
    ap.add_argument("--no-calibration", action="store_true")
    ap.add_argument("--no-coral-train", action="store_true", help="skip the second model per fold (CORAL at training)")
    ap.add_argument("--jobs", type=int, default=1, help="folds fitted in parallel (processes)")
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    ap.add_argument("--cache", default=None, help="folder keeping fitted models between runs (joblib)")
    ap.add_argument("--neural", default=None, help="also a network recipe: no adaptation / AdaBN / Deep CORAL / MMD")
    ap.add_argument("--neural-set", action="append", default=[], help="recipe override for --neural (key=value)")
    ap.add_argument("--neural-corpora", default="emodb,tess,ravdess")
    ap.add_argument("--neural-max-per-corpus", type=int, default=200)
    ap.add_argument("--only-neural", action="store_true", help="skip the feature-model table")
    args = ap.parse_args(argv)

    from joblib import Parallel, delayed

    from serkit.calibration import apply_temperature, ece, fit_temperature
    from serkit.corpora import load_corpus

    names = [] if args.only_neural else [c.strip() for c in args.corpora.split(",") if c.strip()]
    missing = missing_corpora(names)
    if missing:
        print(f"domain: unknown or missing corpora {missing} under {DATA}; set SERKIT_DATA", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    by = load_capped(names, args.max_per_corpus)

    fewshot = None if args.no_fewshot else {"shots": SHOTS, "episodes": args.episodes, "seed": 0}
    jobs = [((c,), {c: by[c]}, fewshot) for c in names]
    if not args.no_calibration:
        jobs += [((a, b), {a: by[a], b: by[b]}, None) for i, a in enumerate(names) for b in names[i + 1 :]]
    tasks = [
        delayed(run_fold)(
            args.recipe,
            [u for c in names if c not in held for u in by[c]],
            tests,
            fs,
            len(held) == 1,
            not args.no_coral_train,
            args.cache,
        )
        for held, tests, fs in jobs
    ]
    neural_names = [c.strip() for c in args.neural_corpora.split(",") if c.strip()] if args.neural else []
    if neural_names:
        nby = {}
        for c in neural_names:
            nby[c] = cap(load_corpus(f"{c}:{DATA / CORPORA[c]}", label_set="6class"), args.neural_max_per_corpus)
        tasks += [
            delayed(run_neural_fold)(
                args.neural, args.neural_set, [u for o in neural_names if o != c for u in nby[o]], nby[c]
            )
            for c in neural_names
        ]
    results = Parallel(n_jobs=args.jobs, verbose=0)(tasks)
    neural = dict(zip(neural_names, results[len(jobs) :]))
    results = results[: len(jobs)]
    fits = dict(zip([held for held, _, _ in jobs], results))
    if not names:
        rows = {"neural": _neural_rows(neural, nby, args)}
        _print_neural(rows["neural"])
        _save(rows, args)
        return 0
    labels = fits[(names[0],)]["labels"]
    index = {lab: i for i, lab in enumerate(labels)}

    def y(c):
        return np.array([index[str(u.label)] for u in by[c]])

    modes = MODES if args.no_coral_train else MODES + ("coral-train",)
    table = {c: {m: _ua(labels, fits[(c,)]["probs"][c][m], by[c]) for m in modes} for c in names}
    rows = {"per_corpus": table, "fit_seconds": [r["fit_seconds"] for r in results]}
    if neural:
        rows["neural"] = _neural_rows(neural, nby, args)

    if not args.no_calibration:
        before, after, temps = defaultdict(list), defaultdict(list), {}
        for c in names:
            t = {}
            for m in MODES:
                inner = [(fits[tuple(sorted((c, j), key=names.index))]["probs"][j][m], y(j)) for j in names if j != c]
                t[m] = fit_temperature(np.concatenate([p for p, _ in inner]), np.concatenate([q for _, q in inner]))
                p = fits[(c,)]["probs"][c][m]
                before[m].append(p)
                after[m].append(apply_temperature(p, t[m]))
            temps[c] = t
        yy = np.concatenate([y(c) for c in names])
        rows["calibration"] = {
            m: {
                "ece_before": ece(np.concatenate(before[m]), yy),
                "ece_after": ece(np.concatenate(after[m]), yy),
                "temperature_median": float(np.median([temps[c][m] for c in names])),
            }
            for m in MODES
        }
        rows["temperatures"] = temps

    if fewshot is not None:
        rows["fewshot"] = {c: fits[(c,)]["fewshot"] for c in names}

    _print(names, rows, args)
    n_models = len(results) + (0 if args.no_coral_train else len(names))
    print(
        f"\n{n_models} models fitted, {time.perf_counter() - t_start:.0f} s wall; load average {os.getloadavg()[0]:.1f}"
    )
    _save(rows, args)
    return 0


def _neural_rows(neural: dict, nby: dict, args) -> dict:
    return {
        "recipe": args.neural,
        "overrides": args.neural_set,
        "max_per_corpus": args.neural_max_per_corpus,
        "per_corpus": {c: {m: _ua(r["labels"], p, nby[c]) for m, p in r["probs"].items()} for c, r in neural.items()},
        "seconds": {c: r["seconds"] for c, r in neural.items()},
    }


def _save(rows: dict, args) -> None:
    if args.out:
        from serkit.cache import atomic_write_text
        from serkit.jsonio import dumps

        atomic_write_text(args.out, dumps(rows))


def _print(names, rows, args) -> None:
    t = rows["per_corpus"]
    short = {"korean-emotiontts": "korean"}
    head = " | ".join(f"{short.get(c, c):>7s}" for c in names)
    print(f"\nLeave-one-corpus-out, 6 classes, recipe {args.recipe}, ≤ {args.max_per_corpus or 'all'} clips per corpus")
    print(f"| method | mode | {head} | mean |")
    print("|---|---|" + "---:|" * (len(names) + 1))
    what = {
        "none": ("no adaptation", "single utterance"),
        "speaker": ("no adaptation", "speaker-adapted"),
        "voices": ("voice groups (serkit adapt)", "single utterance"),
        "coral": ("CORAL (serkit adapt --adapt-method coral)", "single utterance"),
        "coral-train": ("CORAL at training (train --target)", "single utterance"),
    }
    for m in [m for m in what if m in t[names[0]]]:
        vals = [t[c][m] for c in names]
        print(f"| {what[m][0]} | {what[m][1]} | " + " | ".join(f"{v:7.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")
    for m in ("voices", "coral"):
        gain = np.mean([t[c][m] - t[c]["none"] for c in names])
        print(
            f"\n{what[m][0]}: gain over no adaptation (single utterance), mean over folds: {100 * gain:+.1f} UA points"
        )
    if "neural" in rows:
        _print_neural(rows["neural"])
    if "calibration" in rows:
        print("\n| mode | ECE before | ECE after | T (median over folds) |\n|---|---:|---:|---:|")
        for m in MODES:
            r = rows["calibration"][m]
            print(
                f"| {what[m][1]} ({what[m][0]}) | {r['ece_before']:.3f} | {r['ece_after']:.3f} | {r['temperature_median']:.2f} |"
            )
    if "fewshot" in rows:
        print(
            f"\nFew-shot (K labelled clips per class of the held-out corpus; mean UA over folds, {args.episodes} episodes)"
        )
        print(
            "| K | zero-shot | SVM on the K shots | enrolled (serkit enrol) | gain over zero-shot | folds |\n|---:|---:|---:|---:|---:|---:|"
        )
        for k in SHOTS:
            per = [rows["fewshot"][c][str(k)] for c in names if "skipped" not in rows["fewshot"][c][str(k)]]
            if not per:
                continue
            z, s, e = (np.mean([p[key]["mean"] for p in per]) for key in ("zero_shot", "svm", "enrolled"))
            print(f"| {k} | {z:.3f} | {s:.3f} | {e:.3f} | {100 * (e - z):+.1f} | {len(per)} |")


def _print_neural(n: dict) -> None:
    short = {"korean-emotiontts": "korean"}
    cs = list(n["per_corpus"])
    print(
        f"\nNetwork {n['recipe']} {' '.join(n['overrides'])}, ≤ {n['max_per_corpus']} clips per corpus, single utterance"
    )
    print("| method | " + " | ".join(f"{short.get(c, c):>7s}" for c in cs) + " | mean |")
    print("|---|" + "---:|" * (len(cs) + 1))
    label = {"none": "no adaptation", "adabn": "AdaBN (serkit adapt)", "deep-coral": "Deep CORAL (train --target)"}
    label["mmd"] = "MMD (train --target)"
    for m in ("none", "adabn", "deep-coral", "mmd"):
        vals = [n["per_corpus"][c][m] for c in cs]
        print(f"| {label[m]} | " + " | ".join(f"{v:7.3f}" for v in vals) + f" | {np.mean(vals):.3f} |")


if __name__ == "__main__":
    sys.exit(main())

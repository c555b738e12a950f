"""Speaker adaptation on one-sided speakers: single-utterance, fully adapted and robust-adapted UA.

Usage::

    export PYTHONPATH=src SERKIT_DATA=../shared/data OPENBLAS_NUM_THREADS=1
    nice -n 10 python benchmarks/onesided.py --cache runs/folds-all
    nice -n 10 python benchmarks/onesided.py --select nested --cache runs/folds-all
    nice -n 10 python benchmarks/onesided.py --corpora emodb,tess,ravdess --cache runs/folds-3

Per-speaker standardisation assumes a speaker's clips span several emotions; a speaker who is
angry in every clip has the anger subtracted. Leave-one-corpus-out over the corpora (6 classes,
every clip; a held-out corpus is scored on the classes it has): the recipe (``default``) is
trained on the other corpora and its held-out corpus is grouped three ways —

* **balanced** — the corpus' real speakers;
* **one-sided** — each real speaker's clips split by emotion, one pseudo-speaker per
  (speaker, emotion): every clip of a pseudo-speaker has the same label;
* **two-emotion** — one pseudo-speaker per (speaker, pair of emotions), for every pair, so each
  clip is scored once per pair it belongs to (k − 1 times for k emotions; UA pooled over them).

Only groups with at least the model's ``min_speaker_utterances`` clips are scored (smaller ones get
the training statistics, so adapting changes nothing for them). Each grouping is predicted
single-utterance (``adapt=False``), fully adapted (``adapt_rule: full``, each group standardised
with its own statistics) and robust-adapted (``adapt_rule: robust``,
:func:`serkit.speakers.adaptation_weights`: per speaker, the single-utterance probabilities mixed
with ones adapted given the speaker's emotion mix as its single-utterance predictions estimate it,
the more single-utterance the more one-sided those predictions look).

The robust rule's two thresholds are never chosen on the corpus they are scored on
(``--select``): ``others`` (default) picks, for held-out corpus ``c``, the candidate with the best
mean robust UA (over the three groupings) on the other corpora's outer folds — models that never
scored ``c``'s labels, though ``c``'s clips were in their training data; ``nested`` is the strict
form, inner leave-one-corpus-out: the recipe trained without ``{c, j}`` and scored on ``j``, for
every other corpus ``j`` (21 more fits for seven corpora); ``shipped`` applies
:data:`serkit.speakers.ROBUST_ADAPTATION`. The candidate best on every fold together is what that
constant should be (the shipped model is trained on all seven corpora, so they are its training
corpora). Models come from ``benchmarks/domain.py``'s fitting (``--cache`` shares them; this
benchmark uses every clip, ``--max-per-corpus 0``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import time

import numpy as np

from domain import CORPORA, fitted, load_capped, named_corpora

GROUPINGS = ("balanced", "one-sided", "two-emotion")

#: candidate (low, high) thresholds of the robust rule (:func:`serkit.speakers.adaptation_weights`)
CANDIDATES = [(lo, hi) for lo in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3) for hi in (0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8)]


def groupings(clips, min_utterances: int) -> dict:
    """Grouping name → ``(clips, pseudo-speaker of each)``; groups under ``min_utterances`` clips left out."""
    by_speaker: dict = {}
    for u in clips:
        by_speaker.setdefault(str(u.speaker), []).append(u)
    out = {g: ([], []) for g in GROUPINGS}

    def add(name, members, speaker):
        if len(members) >= min_utterances:
            out[name][0].extend(members)
            out[name][1].extend([speaker] * len(members))

    for s, us in sorted(by_speaker.items()):
        add("balanced", us, s)
        labels = sorted({str(u.label) for u in us})
        for a in labels:
            add("one-sided", [u for u in us if str(u.label) == a], f"{s}|{a}")
        for a, b in itertools.combinations(labels, 2):
            add("two-emotion", [u for u in us if str(u.label) in (a, b)], f"{s}|{a}+{b}")
    return out


def _ua(labels, y, probs) -> float:
    from serkit.metrics import unweighted_accuracy

    return unweighted_accuracy(list(y), [labels[i] for i in np.asarray(probs).argmax(1)])


def probabilities(recipe: str, train, test, cache: str | None) -> dict:
    """Grouping → ``{"y", "speakers", "single", "adapted", "given_mix", "labels"}`` for ``test`` under
    the recipe fitted on ``train``: single-utterance, fully adapted and adapted-given-the-emotion-mix
    probabilities (the robust rule's weights are applied later)."""
    model = fitted(recipe, train, cache)
    model.set_adapt_rule("full")
    labels = model.labels
    out = {}
    for name, (clips, speakers) in groupings(test, model.min_speaker_utterances).items():
        if not clips:  # e.g. no speaker has min_speaker_utterances clips of one emotion
            continue
        pseudo = [dataclasses.replace(u, speaker=s) for u, s in zip(clips, speakers)]
        # the robust rule's two parts, uncalibrated: single-utterance, and adapted given each speaker's
        # emotion mix (the fold models carry no temperatures, so these are what the rule mixes)
        single, given_mix = model._predict_utterances_both(pseudo, list(speakers), progress=False)
        out[name] = {
            "labels": labels,
            "y": [str(u.label) for u in clips],
            "speakers": np.array(speakers),
            "single": single,
            "adapted": model.predict_proba_utterances(pseudo, adapt=True, progress=False),
            "given_mix": given_mix,
        }
    return out


def scores(r: dict, candidates) -> dict:
    """UA of one scored corpus per grouping: single, full, and robust for each candidate."""
    from serkit.speakers import adaptation_weights

    out = {g: {"n": 0} for g in GROUPINGS}  # a grouping with no group big enough: no scores (NaN)
    for g, d in r.items():
        row = {"single": _ua(d["labels"], d["y"], d["single"]), "full": _ua(d["labels"], d["y"], d["adapted"])}
        for cand in candidates:
            w = adaptation_weights(d["single"], d["speakers"], low=cand[0], high=cand[1])[:, None]
            row[cand] = _ua(d["labels"], d["y"], w * d["given_mix"] + (1 - w) * d["single"])
        row["n"] = len(d["y"])
        out[g] = row
    return out


def _job(recipe, train, test, cache, candidates) -> dict:
    return scores(probabilities(recipe, train, test, cache), candidates)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated adapter names (default: all)")
    ap.add_argument("--max-per-corpus", type=int, default=0, help="at most N clips per corpus (0: all)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--cache", default=None, help="folder of fitted models shared with benchmarks/domain.py")
    ap.add_argument(
        "--select",
        choices=("others", "nested", "shipped"),
        default="others",
        help="how a fold's thresholds are chosen: on the other corpora's outer folds (default), by inner "
        "leave-one-corpus-out (21 more fits for 7 corpora), or the shipped ROBUST_ADAPTATION",
    )
    args = ap.parse_args(argv)

    from joblib import Parallel, delayed

    from serkit.speakers import ROBUST_ADAPTATION

    names = named_corpora(args.corpora, "onesided")
    if names is None:
        return 2
    t0 = time.perf_counter()
    by = load_capped(names, args.max_per_corpus, say=False)
    shipped = (ROBUST_ADAPTATION["low"], ROBUST_ADAPTATION["high"])
    candidates = [shipped] if args.select == "shipped" else sorted(set(CANDIDATES) | {shipped})
    jobs = [((c,), c) for c in names]
    if args.select == "nested":
        jobs += [((a, b), s) for i, a in enumerate(names) for b in names[i + 1 :] for s in (a, b)]
    results = Parallel(n_jobs=args.jobs)(
        delayed(_job)(args.recipe, [u for c in names if c not in held for u in by[c]], by[s], args.cache, candidates)
        for held, s in jobs
    )
    got = {(tuple(sorted(h)), s): r for (h, s), r in zip(jobs, results)}

    def objective(c, cand):
        """Mean robust UA over the groupings of the corpora other than ``c``, by models that never
        scored ``c`` (``nested``: trained without ``c`` either)."""
        keys = [tuple(sorted((c, j))) if args.select == "nested" else (j,) for j in names if j != c]
        others = [j for j in names if j != c]
        return np.nanmean([got[(k, j)][g].get(cand, np.nan) for k, j in zip(keys, others) for g in GROUPINGS])

    if args.select == "shipped":
        chosen = {c: shipped for c in names}
        _table(names, got, chosen, f"robust (shipped low={shipped[0]}, high={shipped[1]})")
    else:
        chosen = {c: max(candidates, key=lambda cand: objective(c, cand)) for c in names}
        _table(names, got, chosen, f"robust, thresholds chosen without the held-out corpus ({args.select})")
        print("\nchosen per fold (low, high): " + ", ".join(f"{c} {v}" for c, v in chosen.items()))
        overall = max(
            candidates,
            key=lambda cand: np.nanmean([got[((c,), c)][g].get(cand, np.nan) for c in names for g in GROUPINGS]),
        )
        print(f"on every fold together (what ROBUST_ADAPTATION should be): low={overall[0]}, high={overall[1]}")
        _table(names, got, {c: overall for c in names}, f"robust, low={overall[0]} high={overall[1]}")
    print(f"\n{len(jobs)} scorings, {time.perf_counter() - t0:.0f} s wall; load average {os.getloadavg()[0]:.1f}")
    return 0


def _table(names, got, chosen, title) -> None:
    short = {"korean-emotiontts": "korean"}
    print(f"\nLeave-one-corpus-out, UA single / fully adapted / {title}")
    print("| held-out corpus | " + " | ".join(f"{g} single | full | robust" for g in GROUPINGS) + " |")
    print("|---|" + "---:|" * (3 * len(GROUPINGS)))
    rows = []
    for c in names:
        r = got[((c,), c)]
        vals = [r[g].get(k, np.nan) for g in GROUPINGS for k in ("single", "full", chosen[c])]
        rows.append(vals)
        print(f"| {short.get(c, c)} | " + " | ".join("–" if np.isnan(v) else f"{v:.3f}" for v in vals) + " |")
    print("| mean | " + " | ".join(f"{v:.3f}" for v in np.nanmean(rows, axis=0)) + " |")
    n = {g: sum(got[((c,), c)][g]["n"] for c in names) for g in GROUPINGS}
    print("scored rows: " + ", ".join(f"{g} {n[g]}" for g in GROUPINGS) + " (– : no group big enough)")


if __name__ == "__main__":
    raise SystemExit(main())

"""Choosing ``serkit adapt --adapt-method voices``'s settings on training corpora only (nested LOCO).

Usage::

    python benchmarks/voices.py --cache runs/folds --jobs 2
    python benchmarks/voices.py --corpora emodb,tess,ravdess --max-per-corpus 0
    python benchmarks/voices.py --model src/serkit/assets/default-model --corpora ased,nemo,turev,korean-emotiontts

The settings are the number of voice groups (:data:`serkit.speakers.VOICE_GROUPS`; 1 = the whole
target standardised as one speaker) and the self-training head (off, or the fraction of each
predicted class taken as pseudo-labels and the head's C; :data:`serkit.domain.SELF_TRAIN_FRACTION`,
:data:`serkit.domain.SELF_TRAIN_C`).

For each held-out (outer) corpus ``c`` every candidate is scored by an *inner* leave-one-corpus-out
over the other corpora: the recipe trained without ``{c, j}``, adapted to ``j``'s unlabelled audio,
scored on ``j`` (UA, single utterance), averaged over ``j``. The candidate with the best inner mean
is then applied to the outer model (trained without ``c``), adapted to ``c``'s audio and scored on
``c``; the held-out corpus never takes part in choosing. The table gives, per outer fold, no
adaptation, speaker-adapted (true speakers, for reference), the selected candidate, and every
candidate's outer UA (to read, not to choose by); the last line is the candidate chosen on all
corpora together (what the shipped constants should be). Models come from
``benchmarks/domain.py``'s fitting (``--cache`` shares them).

``--model DIR`` instead scores a saved model on corpora it was not trained on, as a user would run
``serkit adapt``: per corpus, UA and ECE of single clips unadapted and after ``serkit adapt``'s
default method on that corpus' unlabelled clips (the model's own calibration applied to both).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections import Counter

import numpy as np

from domain import CORPORA, _ua, fitted, load_capped, named_corpora

#: (voice groups, self-training: None or (fraction, C))
CANDIDATES = [(k, st) for k in (1, 2, 3) for st in (None, (0.3, 0.01), (0.5, 0.01), (0.5, 0.001))]


def _name(cand) -> str:
    k, st = cand
    return f"k={k}" + (f" st {st[0]:g}/{st[1]:g}" if st else "")


def scores(recipe: str, train, test, cache) -> dict:
    """UA on ``test`` of the recipe fitted on ``train``: unadapted, speaker-adapted, and per candidate."""
    from serkit.speakers import nearest_voice

    model = fitted(recipe, train, cache)
    labels = model.labels
    views = model._blocks_from_utterances(test, False)
    emb = model._voice_embeddings(utterances=test)
    speakers = np.array([str(u.speaker) for u in test])
    out = {
        "none": _ua(labels, model._proba_from_views(views, None), test),
        "speaker": _ua(labels, model._proba_from_views(views, speakers), test),
    }
    for cand in CANDIDATES:
        k, st = cand
        m = copy.copy(model)
        fraction, c = st or (0.3, 0.01)  # (unused without self-training)
        m._adapt_voice_rows(views, emb, k, self_train=st is not None, fraction=fraction, c=c)
        out[_name(cand)] = _ua(
            labels, m._proba_from_views(views, None, nearest_voice(emb, m.voices_["centroids"])), test
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--corpora", default=",".join(CORPORA))
    ap.add_argument("--max-per-corpus", type=int, default=700)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--cache", default=None, help="folder of fitted models shared with benchmarks/domain.py")
    ap.add_argument("--model", default=None, help="score this saved model, unadapted and adapted, instead")
    args = ap.parse_args(argv)

    from joblib import Parallel, delayed

    names = named_corpora(args.corpora, "voices")
    if names is None:
        return 2
    t0 = time.perf_counter()
    by = load_capped(names, args.max_per_corpus, say=False)
    if args.model:
        return _saved_model(args.model, by, t0)
    # (held-out set, scored corpus): outer folds score their corpus, inner pairs score each member
    jobs = [((c,), c) for c in names] + [
        ((a, b), s) for i, a in enumerate(names) for b in names[i + 1 :] for s in (a, b)
    ]
    results = Parallel(n_jobs=args.jobs)(
        delayed(scores)(args.recipe, [u for c in names if c not in held for u in by[c]], by[s], args.cache)
        for held, s in jobs
    )
    got = {(tuple(sorted(h)), s): r for (h, s), r in zip(jobs, results)}
    cands = [_name(c) for c in CANDIDATES]

    def inner(c, cand):
        return np.mean([got[(tuple(sorted((c, j))), j)][cand] for j in names if j != c])

    short = {"korean-emotiontts": "korean"}
    print(f"\nNested leave-one-corpus-out, recipe {args.recipe}, ≤ {args.max_per_corpus or 'all'} clips per corpus")
    print(
        "| held-out corpus | none | speaker-adapted | selected on the others | its UA | gain | "
        + " | ".join(cands)
        + " |"
    )
    print("|---|---:|---:|---|---:|---:|" + "---:|" * len(cands))
    chosen, gains = [], []
    for c in names:
        r = got[((c,), c)]
        best = max(cands, key=lambda cand: inner(c, cand))
        chosen.append(best)
        gains.append(r[best] - r["none"])
        print(
            f"| {short.get(c, c)} | {r['none']:.3f} | {r['speaker']:.3f} | {best} | {r[best]:.3f} | "
            f"{100 * gains[-1]:+.1f} | " + " | ".join(f"{r[k]:.3f}" for k in cands) + " |"
        )
    mean = {k: np.mean([got[((c,), c)][k] for c in names]) for k in ["none", "speaker", *cands]}
    sel = np.mean([got[((c,), c)][b] for c, b in zip(names, chosen)])
    print(
        f"| mean | {mean['none']:.3f} | {mean['speaker']:.3f} | | {sel:.3f} | {100 * np.mean(gains):+.1f} | "
        + " | ".join(f"{mean[k]:.3f}" for k in cands)
        + " |"
    )
    overall = max(cands, key=lambda cand: np.mean([inner(c, cand) for c in names]))
    print(f"\nchosen per fold: {dict(Counter(chosen))}; on all inner folds together: {overall}")
    print(f"{len(jobs)} scorings, {time.perf_counter() - t0:.0f} s wall; load average {os.getloadavg()[0]:.1f}")
    return 0


def _saved_model(model_dir, by: dict, t0: float) -> int:
    from serkit.adaptation import adapt_classifier
    from serkit.calibration import ece
    from serkit.models import load_model

    base, _ = load_model(model_dir)
    print(f"\n{model_dir}: single clips, unadapted and after serkit adapt (its default method) on each corpus")
    print("| corpus | clips | UA | UA adapted | gain | ECE | ECE adapted |\n|---|---:|---:|---:|---:|---:|---:|")
    gains = []
    for c, clips in by.items():
        y = np.array([base.labels.index(str(u.label)) for u in clips])
        p0 = base.predict_proba_utterances(clips, adapt=False, progress=False)
        p1 = adapt_classifier(copy.deepcopy(base), clips).predict_proba_utterances(clips, adapt=False, progress=False)
        u0, u1 = _ua(base.labels, p0, clips), _ua(base.labels, p1, clips)
        gains.append(u1 - u0)
        print(
            f"| {c} | {len(clips)} | {u0:.3f} | {u1:.3f} | {100 * (u1 - u0):+.1f} | {ece(p0, y):.3f} | {ece(p1, y):.3f} |"
        )
    print(
        f"\nmean gain {100 * np.mean(gains):+.1f} UA points; {time.perf_counter() - t0:.0f} s wall, load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CORAL on the leave-one-corpus-out task: single-utterance UA without and with adaptation, per corpus.

Usage::

    python benchmarks/coral.py [--recipe default] [--out runs/coral.json]

For every held-out corpus (EmoDB, TESS, the RAVDESS sample under ``$SERKIT_DATA``, 6 classes) the
recipe is trained on the other corpora and adapted to the held-out corpus' unlabelled audio with
each covariance shrinkage target (``identity``, ``diagonal``: :func:`serkit.domain.covariance`).
The target is *chosen per fold on its training corpora only*: inner leave-one-corpus-out among
them (a model trained on one training corpus, adapted to and scored on the other, both ways),
never on the held-out corpus. The table gives unadapted, both targets and the chosen one, plus the
speaker-adapted UA (which CORAL does not change).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DATA = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CORPORA = {"emodb": "emodb:{d}/emodb", "tess": "tess:{d}/tess", "ravdess": "ravdess:{d}/ravdess-sample"}
TARGETS = ("identity", "diagonal")


def main(argv=None) -> int:
    from serkit.adaptation import adapt_classifier
    from serkit.corpora import load_corpora
    from serkit.metrics import unweighted_accuracy
    from serkit.models import build_model
    from serkit.recipe import load_recipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    recipe = load_recipe(args.recipe)
    specs = [CORPORA[c].format(d=DATA) for c in CORPORA]
    utts = load_corpora(specs, label_set="6class", check_audio=True)
    by = {c: [u for u in utts if u.corpus == c] for c in CORPORA}

    def ua(model, test, adapt=False):
        p = model.predict_proba_utterances(test, adapt=adapt, progress=False)
        return unweighted_accuracy([u.label for u in test], [model.labels[i] for i in p.argmax(1)])

    fitted = {}

    def scores(train_corpora, test):
        """UA on ``test`` unadapted, per shrinkage target, and speaker-adapted, of a model fitted on ``train``."""
        key = tuple(train_corpora)
        if key not in fitted:
            fitted[key] = build_model(recipe.model).fit([u for c in key for u in by[c]], progress=False)
        model = fitted[key]
        model.domain_map_ = None  # unadapted first
        out = {"none": ua(model, test), "speaker": ua(model, test, adapt=True)}
        for t in TARGETS:
            adapt_classifier(model, test, shrink_to=t)
            out[t] = ua(model, test)
        return out

    single = {}  # (train corpus, test corpus) -> scores, for the inner selection
    rows = []
    for held in CORPORA:
        train_corpora = [c for c in CORPORA if c != held]
        inner = {}
        for a in train_corpora:
            for b in train_corpora:
                if a != b:
                    if (a, b) not in single:
                        single[(a, b)] = scores([a], by[b])
                    inner[f"{a}>{b}"] = single[(a, b)]
        inner_mean = {t: sum(s[t] for s in inner.values()) / len(inner) for t in TARGETS}
        chosen = max(TARGETS, key=lambda t: inner_mean[t])
        outer = scores(train_corpora, by[held])
        rows.append(
            {
                "held_out": held,
                "n_test": len(by[held]),
                **outer,
                "chosen": chosen,
                "coral": outer[chosen],
                "inner": inner,
                "inner_mean": inner_mean,
            }  # fmt: skip
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    print(f"\n{args.recipe}, leave-one-corpus-out, single-utterance UA (speaker-adapted in the last column)\n")
    print("| held out | n | none | CORAL identity | CORAL diagonal | chosen (inner) | CORAL chosen | gain | speaker |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['held_out']} | {r['n_test']} | {r['none']:.3f} | {r['identity']:.3f} | {r['diagonal']:.3f} | "
            f"{r['chosen']} | {r['coral']:.3f} | {100 * (r['coral'] - r['none']):+.1f} | {r['speaker']:.3f} |"
        )
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("none", "identity", "diagonal", "coral", "speaker")}
    print(
        f"| mean | | {mean['none']:.3f} | {mean['identity']:.3f} | {mean['diagonal']:.3f} | | {mean['coral']:.3f} | "
        f"{100 * (mean['coral'] - mean['none']):+.1f} | {mean['speaker']:.3f} |"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        from serkit.cache import atomic_write_text

        atomic_write_text(args.out, json.dumps({"recipe": args.recipe, "rows": rows, "mean": mean}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy benchmark: recipes × speaker-independent protocols, printed as one table.

Rows: EmoDB leave-one-speaker-out (7 classes, 10 folds) and TESS cross-speaker (train on one
speaker, test on the other, both ways). Columns: UA, WA, macro-F1 and wall time. Corpora are read
from ``$SERKIT_DATA`` (default ../shared/data). Results are also written as JSON.

    python benchmarks/accuracy.py                       # the classic recipes
    python benchmarks/accuracy.py --recipes compare-svm,soundnet-linear --tasks emodb-loso
    python benchmarks/accuracy.py --preset soundnet --tasks emodb-loso   # linear + 3 fine-tuning strategies
    python benchmarks/accuracy.py --row "ft-full=soundnet-finetune:model.strategy=full,model.train.epochs=20"
    python benchmarks/accuracy.py --recipes default --tasks loco   # leave-one-corpus-out, 6 classes

``loco`` (not run by default) trains on two of EmoDB, TESS and the RAVDESS sample and tests on the
third, with the 6-class label set; it prints one row per unseen corpus and the pooled row.
``emodb-kfold5`` (not run by default) is EmoDB in 5 folds of two speakers each: the protocol on
which recipe settings are chosen, so that the LOSO row stays an honest test.

A row is ``LABEL=RECIPE[:KEY=VALUE,KEY=VALUE...]`` (overrides for that row only, applied after the
global ``--set`` ones); ``--row`` may repeat and replaces ``--recipes``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))

TASKS = {
    "emodb-loso": (["emodb:{data}/emodb"], "loso"),
    "tess-oaf>yaf": (["tess:{data}/tess"], "holdout:YAF"),
    "tess-yaf>oaf": (["tess:{data}/tess"], "holdout:OAF"),
}
#: the three corpora together, 6 classes: train on two, test on the unseen third (one row per test corpus)
LOCO_CORPORA = ["emodb:{data}/emodb", "tess:{data}/tess", "ravdess:{data}/ravdess-sample"]
OPTIONAL_TASKS = {"loco": (LOCO_CORPORA, "loco"), "emodb-kfold5": (["emodb:{data}/emodb"], "speaker-kfold:5")}

DEFAULT_RECIPES = ["egemaps-svm", "compare-svm", "librosa-svm", "librosa-rf", "stacking"]

PRESETS = {
    "soundnet": [
        "soundnet-linear=soundnet-linear",
        "ft-freeze=soundnet-finetune:model.strategy=freeze",
        "ft-progressive=soundnet-finetune:model.strategy=progressive",
        "ft-full=soundnet-finetune:model.strategy=full",
    ],
}


def parse_row(spec: str) -> tuple[str, str, list[str]]:
    """``LABEL=RECIPE[:K=V,K=V]`` → (label, recipe, overrides); a bare ``RECIPE`` is its own label."""
    label, _, rest = spec.partition("=") if "=" in spec.split(":", 1)[0] else ("", "", spec)
    recipe, _, opts = rest.partition(":")
    overrides = [o for o in opts.split(",") if o]
    return (label or recipe), recipe, overrides


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help="comma-separated recipe names or paths")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="recipe override KEY=VALUE")
    ap.add_argument(
        "--row",
        action="append",
        default=[],
        dest="rows",
        help="LABEL=RECIPE[:KEY=VALUE,...] (repeatable; replaces --recipes)",
    )
    ap.add_argument("--preset", choices=sorted(PRESETS), help="a named list of rows (added to --row)")
    ap.add_argument("--out", default="out/bench/accuracy.json", help="JSON results file")
    ap.add_argument(
        "--adapt",
        default=None,
        help="also adapt each fold to its test audio (coral; transductive): column 'UA domain' (single utterance)",
    )
    args = ap.parse_args(argv)

    from serkit.api import evaluate
    from serkit.cache import atomic_write_text

    rows = []
    header = f"| {'row':22s} | {'task':14s} | {'UA':>6s} | {'WA':>6s} | {'macro-F1':>8s} | {'UA adapt':>8s} | {'UA single':>9s} | {'UA domain':>9s} | {'time s':>7s} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    specs = list(args.rows) + (PRESETS[args.preset] if args.preset else [])
    rows_todo = [parse_row(r) for r in specs] if specs else [(r, r, []) for r in args.recipes.split(",") if r]
    for label, recipe, row_overrides in rows_todo:
        for task in [t for t in args.tasks.split(",") if t]:
            if task not in TASKS and task not in OPTIONAL_TASKS:
                ap.error(f"unknown task {task!r}; choose from {', '.join([*TASKS, *OPTIONAL_TASKS])}")
            corpora, protocol = TASKS.get(task) or OPTIONAL_TASKS[task]
            corpora = [c.format(data=DATA) for c in corpora]
            t0 = time.perf_counter()
            rep = evaluate(
                corpora,
                recipe,
                protocol=protocol,
                overrides=args.overrides + row_overrides,
                progress=False,
                label_set="6class" if task == "loco" else None,
                adapt=args.adapt,
                out=Path(args.out).parent / f"{Path(label).stem}-{task.replace('>', '-')}",
            )
            seconds = time.perf_counter() - t0
            d = rep.to_dict()
            ad = d.get("adaptation") or {}
            row = {
                "label": label,
                "recipe": recipe,
                "overrides": args.overrides + row_overrides,
                "task": task,
                "ua": d["ua"],
                "wa": d["wa"],
                "macro_f1": d["macro_f1"],
                "ua_speaker_adapted": ad.get("speaker", {}).get("ua"),
                "ua_single_utterance": ad.get("none", {}).get("ua"),
                "ua_domain_adapted": ad.get("domain", {}).get("ua"),
                "seconds": seconds,
                "extra": {k: v for k, v in d.get("extra", {}).items() if k in ("strategy",)},
            }
            rows.append(row)

            def f(v):
                return f"{v:.3f}" if isinstance(v, float) else "  -  "

            if protocol == "loco":  # one line per unseen corpus, then the pooled line
                for fold in d["folds"]:
                    corpus = fold["test_corpora"][0]
                    modes = fold.get("ua_by_mode", {})
                    row.setdefault("per_corpus", {})[corpus] = {
                        "ua": fold["ua"],
                        **{f"ua_{k}": v for k, v in modes.items()},
                    }
                    print(
                        f"| {label:22s} | {'loco>' + corpus:14s} | {fold['ua']:6.3f} | {fold['wa']:6.3f} | "
                        f"{fold['macro_f1']:8.3f} | {f(modes.get('speaker')):>8s} | {f(modes.get('none')):>9s} | {f(modes.get('domain')):>9s} | {'':7s} |"
                    )
            print(
                f"| {label:22s} | {task:14s} | {d['ua']:6.3f} | {d['wa']:6.3f} | {d['macro_f1']:8.3f} | "
                f"{f(row['ua_speaker_adapted']):>8s} | {f(row['ua_single_utterance']):>9s} | "
                f"{f(row['ua_domain_adapted']):>9s} | {seconds:7.1f} |",
                flush=True,
            )
    atomic_write_text(args.out, json.dumps(rows, indent=2))
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

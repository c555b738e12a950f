"""Train the shipped default model (recipe ``default``) and record its speaker-independent scores.

    python scripts/train_default.py                 # corpora from $SERKIT_DATA (default ../shared/data)
    python scripts/train_default.py --out DIR       # somewhere else than the package's assets
    python scripts/train_default.py --recipe CANDIDATE.yaml --eval-only --json cand.json

On the seven corpora (EmoDB, TESS, RAVDESS sample, ASED, nEMO, TurEV-DB, Korean EmotionTTS; 6
classes) the recipe is scored leave-one-corpus-out — each corpus held out in turn, the recipe
trained on the other six: single utterance, speaker-adapted, and adapted to the held-out corpus by
voice groups (``serkit adapt``'s default) — and with speaker-kfold:5 (single / speaker-adapted),
then trained on everything and written (atomically) with those scores in ``model.json``; ``serkit
info`` prints them.

The leave-one-corpus-out run is also the calibration (one temperature per mode,
``api.train(calibrate=True)``'s rule, fitted on those out-of-fold predictions), so each held-out
corpus' ECE is given after its mode's temperature (one number per mode over all seven corpora).
``--calibrate-only`` refits just the calibration of the model in ``--out`` and, from the same run, its
leave-one-corpus-out scores (after a change of the adaptation rule or of how it is calibrated);
``--rescore`` scores the recipe under ``--protocols`` again and rewrites only those scores. The model keeps its
training features' mean and covariance (``domain.npz``), so ``serkit adapt --target calls/ --out
my-model`` works on it without the training data.

Set OPENBLAS_NUM_THREADS=1 when other work shares the cores: multi-threaded BLAS then spins and
a logistic-regression fit ran 13x slower (24 s against 324 s on 2 958 clips, load average 6).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from serkit.corpora import SHARED_FOLDERS as CORPORA  # adapter name → folder under $SERKIT_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SERKIT_DATA", ROOT.parent / "shared" / "data"))


def scores(report) -> dict:
    """Pooled UA in both modes of an :func:`serkit.api.evaluate` report (``speaker-kfold:5``)."""
    return {
        "ua_single_utterance": round(report.adaptation["none"]["ua"], 4),
        "ua_speaker_adapted": round(report.adaptation["speaker"]["ua"], 4),
        "wa_speaker_adapted": round(report.adaptation["speaker"]["wa"], 4),
        "macro_f1_speaker_adapted": round(report.adaptation["speaker"]["macro_f1"], 4),
        "n_utterances": report.n_utterances,
    }


def loco_scores(calibration: dict) -> dict:
    """Leave-one-corpus-out scores from the calibration's out-of-fold run (the same folds: each
    corpus held out, the recipe trained on the others): per held-out corpus UA and ECE (after its
    temperature) single-utterance, speaker-adapted and adapted by voice groups (``serkit adapt``);
    the headline UA is the mean over the held-out corpora (each is scored on the classes it has)."""
    by = calibration["by_corpus"]
    modes = {"none": "single_utterance", "speaker": "speaker_adapted", "voices": "voices_adapted"}
    per = {
        c: {
            **{f"ua_{name}": round(r["ua"][m], 4) for m, name in modes.items() if m in r["ua"]},
            **{f"ece_{name}": round(r["ece_after"][m], 4) for m, name in modes.items() if m in r["ece_after"]},
            "n_test": r["n"],
        }
        for c, r in by.items()
    }
    out = {
        f"ua_{name}": round(float(np.mean([r[f"ua_{name}"] for r in per.values()])), 4)
        for name in modes.values()
        if all(f"ua_{name}" in r for r in per.values())
    }
    return {
        **out,
        "mean_over": "held-out corpora",
        "n_utterances": sum(r["n_test"] for r in per.values()),
        "per_corpus": per,
    }


def write_json(path, obj) -> None:
    from serkit.cache import atomic_write_text
    from serkit.jsonio import dumps

    atomic_write_text(path, dumps(obj))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "src" / "serkit" / "assets" / "default-model"))
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--skip-eval", action="store_true", help="train only (keep no scores)")
    ap.add_argument("--eval-only", action="store_true", help="score the recipe, train and write nothing")
    ap.add_argument("--json", help="also write the scores to this file (a candidate's numbers)")
    ap.add_argument(
        "--scores",
        help="take the calibration and scores from this --json file of an --eval-only run of the same recipe "
        "instead of computing them again, and only train",
    )
    ap.add_argument(
        "--protocols",
        default="speaker-kfold:5",
        help="protocols scored besides leave-one-corpus-out, comma-separated (default: %(default)s)",
    )
    ap.add_argument(
        "--calibrate-only",
        action="store_true",
        help="keep the model in --out as it is (estimators, graphs) and refit only its calibration and, from the "
        "same run, its leave-one-corpus-out scores",
    )
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="keep the model in --out as it is and score the recipe under --protocols again, rewriting only "
        "those scores in its model.json (after a change of the adaptation rule)",
    )
    args = ap.parse_args(argv)

    from serkit.api import _trained_on, _voices_mode, evaluate, prepare_data
    from serkit.artifact import save_model
    from serkit.deploy.export import export_features
    from serkit.evaluation.run import fit_temperatures
    from serkit.models import build_model
    from serkit.recipe import load_recipe

    missing = [d for d in CORPORA.values() if not (DATA / d).is_dir()]
    if missing:
        print(f"train_default: {', '.join(missing)} not found under {DATA}; set SERKIT_DATA", file=sys.stderr)
        return 2
    specs = [f"{name}:{DATA / folder}" for name, folder in CORPORA.items()]
    recipe = load_recipe(args.recipe)
    if args.calibrate_only:
        import json

        from serkit.artifact import read_metadata
        from serkit.cache import atomic_write_text

        meta = read_metadata(args.out)
        calibration = fit_temperatures(
            lambda: build_model(recipe.model), prepare_data(specs, recipe.label_set), **_voices_mode(recipe.model)
        )
        # the same out-of-fold run scores the recipe leave-one-corpus-out (under its adaptation rule)
        meta.setdefault("metrics", {})["loco"] = loco_scores(calibration)
        calibration.pop("by_corpus")
        print(f"calibration: {calibration}\nloco: {meta['metrics']['loco']}", flush=True)
        meta["calibration"] = calibration  # only model.json changes: the weights and graphs stay
        atomic_write_text(Path(args.out) / "model.json", json.dumps(meta, indent=2))
        return 0
    if args.rescore:
        import json

        from serkit.artifact import read_metadata
        from serkit.cache import atomic_write_text

        meta = read_metadata(args.out)
        for protocol in args.protocols.split(","):
            report = evaluate(specs, args.recipe, protocol=protocol, progress=True)
            meta.setdefault("metrics", {})[protocol] = scores(report)
            print(f"{protocol}: {meta['metrics'][protocol]}", flush=True)
        atomic_write_text(Path(args.out) / "model.json", json.dumps(meta, indent=2))
        return 0
    utterances = prepare_data(specs, recipe.label_set)
    if args.scores:
        # the calibration and scores of an earlier --eval-only --json run of this very recipe
        import json

        earlier = json.loads(Path(args.scores).read_text())
        if earlier.get("model") != recipe.to_dict()["model"]:
            print(f"train_default: {args.scores} scored another model section than {args.recipe}'s", file=sys.stderr)
            return 2
        calibration, metrics = earlier["calibration"], earlier["metrics"]
        args.skip_eval = True
    else:
        calibration = fit_temperatures(lambda: build_model(recipe.model), utterances, **_voices_mode(recipe.model))
        metrics = {"loco": loco_scores(calibration)}
        calibration.pop("by_corpus")  # kept as metrics["loco"]
    print(f"calibration: {calibration}\nloco: {metrics['loco']}", flush=True)

    def record():
        return {
            "recipe": args.recipe,
            "model": recipe.to_dict()["model"],
            "calibration": calibration,
            "metrics": metrics,
        }

    if args.json:
        write_json(args.json, record())
    if not args.skip_eval:
        for protocol in args.protocols.split(","):
            report = evaluate(specs, args.recipe, protocol=protocol, progress=True)
            metrics[protocol] = scores(report)
            print(f"{protocol}: {metrics[protocol]}", flush=True)
            if args.json:
                write_json(args.json, record())
    if args.eval_only:
        return 0
    model = build_model(recipe.model).fit(utterances, progress=True)
    trained_on = _trained_on(utterances, [f"{name} ({folder})" for name, folder in CORPORA.items()])
    trained_on["label_set"] = recipe.label_set
    path = save_model(
        model,
        args.out,
        recipe=recipe.to_dict(),
        trained_on=trained_on,
        metrics=metrics,
        extra={"calibration": calibration},
    )
    # the chain serkit predicts with: GE2E network and classifier as ONNX, no torch or scikit-learn needed
    # (the scikit-learn classifier is kept, so the folder can be exported again)
    export_features(path, path, keep_sklearn=True)
    size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    print(f"default model: {path} ({size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

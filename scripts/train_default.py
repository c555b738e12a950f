"""Train the shipped default model (recipe ``default``) and record its speaker-independent scores.

    python scripts/train_default.py                 # corpora from $SERKIT_DATA (default ../shared/data)
    python scripts/train_default.py --out DIR       # somewhere else than the package's assets

Evaluates the recipe leave-one-corpus-out and with speaker-kfold:5 on EmoDB + TESS + RAVDESS
(6 classes), both single-utterance and per-speaker adapted, then trains on everything and writes
the model (atomically) with those scores in ``model.json``; ``serkit info`` prints them.

The model is calibrated (one temperature per mode, ``api.train(calibrate=True)``'s rule) on its
leave-one-corpus-out predictions: each training corpus held out in turn, the recipe trained on the
others — single utterance, speaker-adapted, and adapted to the held-out corpus by voice groups
(``serkit adapt``'s default; ``--calibrate-only`` refits just this on the model as it is). It keeps its training features' mean and covariance (``domain.npz``), so ``serkit adapt
--target calls/ --out my-model`` works on it without the training data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SERKIT_DATA", ROOT.parent / "shared" / "data"))
CORPORA = {"emodb": "emodb", "tess": "tess", "ravdess": "ravdess-sample"}


def scores(report) -> dict:
    """Pooled and per-fold UA in both modes, keyed by what each fold held out."""
    out = {
        "ua_single_utterance": round(report.adaptation["none"]["ua"], 4),
        "ua_speaker_adapted": round(report.adaptation["speaker"]["ua"], 4),
        "wa_speaker_adapted": round(report.adaptation["speaker"]["wa"], 4),
        "macro_f1_speaker_adapted": round(report.adaptation["speaker"]["macro_f1"], 4),
        "n_utterances": report.n_utterances,
    }
    if report.protocol == "loco":
        out["per_corpus"] = {
            f["test_corpora"][0]: {
                "ua_single_utterance": round(f["ua_by_mode"]["none"], 4),
                "ua_speaker_adapted": round(f["ua_by_mode"]["speaker"], 4),
                "n_test": f["n_test"],
            }
            for f in report.folds
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "src" / "serkit" / "assets" / "default-model"))
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--skip-eval", action="store_true", help="train only (keep no scores)")
    ap.add_argument(
        "--calibrate-only",
        action="store_true",
        help="keep the model in --out as it is (estimators, scores) and refit only its calibration",
    )
    args = ap.parse_args(argv)

    from serkit.api import _trained_on, _voices_mode, evaluate, prepare_data
    from serkit.artifact import save_model
    from serkit.evaluation.run import fit_temperatures
    from serkit.models import build_model, load_model
    from serkit.recipe import load_recipe

    missing = [d for d in CORPORA.values() if not (DATA / d).is_dir()]
    if missing:
        print(f"train_default: {', '.join(missing)} not found under {DATA}; set SERKIT_DATA", file=sys.stderr)
        return 2
    specs = [f"{name}:{DATA / folder}" for name, folder in CORPORA.items()]
    recipe = load_recipe(args.recipe)
    if args.calibrate_only:
        model, meta = load_model(args.out)
        calibration = fit_temperatures(
            lambda: build_model(recipe.model), prepare_data(specs, recipe.label_set), **_voices_mode(recipe.model)
        )
        print(f"calibration: {calibration}", flush=True)
        save_model(
            model,
            args.out,
            recipe=meta["recipe"],
            trained_on=meta["trained_on"],
            metrics=meta["metrics"],
            extra={"calibration": calibration},
        )
        return 0
    metrics = {}
    if not args.skip_eval:
        for protocol in ("loco", "speaker-kfold:5"):
            report = evaluate(specs, args.recipe, protocol=protocol, progress=True)
            metrics[protocol] = scores(report)
            print(f"{protocol}: {metrics[protocol]}", flush=True)
    utterances = prepare_data(specs, recipe.label_set)
    calibration = fit_temperatures(lambda: build_model(recipe.model), utterances, **_voices_mode(recipe.model))
    print(f"calibration: {calibration}", flush=True)
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
    size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    print(f"default model: {path} ({size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

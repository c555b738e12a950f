"""What pretraining without labels buys per label: EmoDB leave-one-speaker-out at 10 / 25 / 50 / 100 % of the labels.

Usage::

    python benchmarks/pretraining.py --quick                 # minutes: a smoke run, NOT the measurement
    python benchmarks/pretraining.py --out runs/pretraining.json --work runs/pretraining   # hours

Rows (all the ``soundnet-res`` recipe's network and training, only the start differs):

* **random** — random initialisation (the recipe as shipped);
* **simclr** — ``model.init`` from ``serkit pretrain --method simclr`` (NT-Xent, two augmented views);
* **teacher** — ``model.init`` from ``serkit pretrain --method teacher --teacher ge2e`` (the student's
  projection matches the GE2E speaker encoder's utterance embedding, cosine);
* **teacher-emotion** — ``model.init`` from ``serkit pretrain --method teacher --teacher T.npz``, T the
  per-file probabilities of the ``default`` recipe fitted on the pretraining corpora' labels (never
  EmoDB's), each clip predicted alone; KL divergence at the recipe's temperature. Cross-corpus
  distillation: the student's audio is unlabelled, its teacher learned emotions elsewhere;
* **soundnet-svm** — the reference: frozen pretrained SoundNet (``soundnet-linear``: slowed speech,
  conv4+conv5 statistics) + linear SVM.

Pretraining data: the unlabelled audio of every corpus under ``$SERKIT_DATA`` *except* EmoDB (so no
row is transductive: no test speaker's audio is seen while pretraining). Label fractions are drawn per
training speaker and class (at least one clip each), ``--seeds`` times; UA is pooled over the LOSO
folds, single utterance (training statistics only) and speaker-adapted, then mean ± std over seeds.

``--quick`` shrinks everything so that it runs in about half an hour on a shared 2-core machine: the
first EmoDB speaker as the only fold, 10 % and 25 %, one seed, 50 pretraining clips per corpus, 1
pretraining epoch, 3 training epochs on 1.5-s crops. Its numbers say the pipeline runs, not what pretraining buys.

Measured (2026-12-02, all 10 folds, 10 % of the labels, seed 0, ``--pretrain-clips 200 --pretrain-epochs 3``;
each method its own process with ``--methods M``, load 2-4), UA single / adapted: random 0.393 / 0.435,
SimCLR 0.382 / 0.413, teacher (GE2E) 0.363 / 0.412; ``--methods soundnet-svm --fractions 0.1,0.25,0.5,1.0
--seeds 3``: 0.562 / 0.650, 0.590 / 0.725, 0.643 / 0.784, 0.683 / 0.830. 2026-12-03, ``--methods teacher-emotion
--fractions 0.1 --seeds 1 --pretrain-clips 200`` with ``--pretrain-epochs 3`` then ``12`` (resumed;
load 1.3-2.5): 0.384 / 0.403, then 0.397 / 0.456. With all of the other corpora' audio
(``--methods teacher-emotion --fractions 0.1 --seeds 2 --pretrain-clips 0 --pretrain-epochs 6``; 10 417
clips, pretraining 1 680 s) beside ``--methods random --fractions 0.1 --seeds 2`` (one core each, load
1.4-2.1): teacher-emotion 0.473 ± 0.003 / 0.508 ± 0.008, random 0.375 ± 0.002 / 0.407 ± 0.012.
The README discusses them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from domain import CORPORA, DATA, load_capped, missing_corpora

METHODS = ("random", "simclr", "teacher", "teacher-emotion", "soundnet-svm")
#: the pretraining methods (a checkpoint each) and the ``serkit pretrain --method`` they run
PRETRAINED = {"simclr": "simclr", "teacher": "teacher", "teacher-emotion": "teacher"}


def subsample(train, fraction: float, seed: int) -> list:
    """``fraction`` of each (speaker, class) group of ``train`` (at least one clip), seeded."""
    if fraction >= 1:
        return list(train)
    rng = np.random.default_rng(seed)
    groups = defaultdict(list)
    for u in train:
        groups[(str(u.speaker), str(u.label))].append(u)
    out = []
    for key in sorted(groups):
        g = groups[key]
        k = max(1, int(round(fraction * len(g))))
        out += [g[i] for i in sorted(rng.choice(len(g), size=k, replace=False))]
    return out


def emotion_teacher(by: dict, work: Path) -> Path:
    """An ``.npz`` of per-file teacher probabilities (``files``, ``targets``) for the pretraining
    clips: the ``default`` recipe (GE2E + librosa, logistic regression) fitted on the *labels of the
    pretraining corpora* (never EmoDB's), predicting each clip from that clip alone (no speaker
    statistics). Cross-corpus knowledge distillation: the student learns from unlabelled audio what a
    labelled model of other corpora hears in it, as SoundNet learned from image networks."""
    path = work / "teacher-emotion.npz"
    if path.exists():
        return path
    import io

    from domain import fitted
    from serkit.cache import atomic_write_bytes

    t0 = time.perf_counter()
    utts = [u for c in sorted(by) for u in by[c]]
    model = fitted("default", utts, cache=str(work / "fits"))
    proba = model.predict_proba_utterances(utts, adapt=False)
    buf = io.BytesIO()
    np.savez(
        buf,
        files=np.array([u.path for u in utts]),
        targets=np.asarray(proba, dtype=np.float32),
        labels=np.array(model.labels),
    )
    atomic_write_bytes(path, buf.getvalue())
    agree = float(np.mean([model.labels[j] == u.label for j, u in zip(proba.argmax(1), utts)]))
    print(
        f"emotion teacher: default recipe on {len(utts)} labelled clips of {', '.join(sorted(by))}; "
        f"labels {list(model.labels)}; agrees with their labels on {agree:.1%} ({time.perf_counter() - t0:.0f}s)"
    )
    return path


def pretrained(method: str, files: list[str], work: Path, epochs: int, overrides: list[str], by: dict) -> Path:
    """The checkpoint of ``method`` on ``files`` (reused, or resumed up to ``epochs``)."""
    from serkit.api import pretrain
    from serkit.training.pretrain import read_checkpoint

    out = work / f"pretrain-{method}"
    resume = out.is_dir()
    if resume and read_checkpoint(out)["epochs_done"] >= epochs:
        return out
    teacher = None
    if method == "teacher":
        teacher = "ge2e"
    elif method == "teacher-emotion":
        teacher = str(emotion_teacher(by, work))
    t0 = time.perf_counter()
    _, meta = pretrain(
        files,
        out=out,
        method=PRETRAINED[method],
        backbone="soundnet-res",
        teacher=teacher,
        teacher_output="embedding",
        overrides=[f"pretrain.epochs={epochs}", *overrides],
        resume=resume,
        progress=True,
    )
    losses = ", ".join(f"{h['loss']:.3f}" for h in meta["history"])
    print(
        f"pretrained {method}: {meta['data']['n_clips']} clips, loss per epoch {losses} ({time.perf_counter() - t0:.0f}s)"
    )
    return out


def model_section(method: str, checkpoints: dict, train_overrides: list[str]) -> dict:
    from serkit.recipe import load_recipe

    if method == "soundnet-svm":
        return load_recipe("soundnet-linear").model
    overrides = list(train_overrides)
    if method in checkpoints:
        overrides.append(f"model.init={checkpoints[method]}")
    return load_recipe("soundnet-res", overrides).model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run in minutes (see the module docstring)")
    ap.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--folds", type=int, default=0, help="only the first N LOSO folds (0: all)")
    ap.add_argument("--pretrain-clips", type=int, default=0, help="cap on pretraining clips per corpus (0: all)")
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--set", action="append", default=[], dest="train_overrides", help="soundnet-res recipe overrides")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--work", default="runs/pretraining", help="checkpoints (reused by the next run)")
    ap.add_argument("--out", default=None, help="write the table and per-run numbers as JSON")
    args = ap.parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds, folds_cap, pre_cap, pre_epochs = args.seeds, args.folds, args.pretrain_clips, args.pretrain_epochs
    train_overrides = list(args.train_overrides)
    if args.quick:
        fractions, seeds, folds_cap, pre_cap, pre_epochs = [0.1, 0.25], 1, 1, 50, 1
        train_overrides = ["model.train.epochs=3", "model.train.crop_seconds=1.5", *train_overrides]
    methods = [m for m in args.methods.split(",") if m]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from serkit.corpora import load_corpus
    from serkit.evaluation.protocols import parse_protocol
    from serkit.metrics import unweighted_accuracy
    from serkit.models import build_model

    others = [c for c in CORPORA if c != "emodb"]
    gone = missing_corpora(others)
    if gone:
        print(f"not under {DATA}: {', '.join(gone)} (left out of the pretraining data)")
    by = load_capped([c for c in others if c not in gone], pre_cap)
    files = sorted({u.path for utts in by.values() for u in utts})
    print(f"pretraining data: {len(files)} files of {', '.join(by)} (EmoDB excluded: not transductive)")
    checkpoints = {m: pretrained(m, files, work, pre_epochs, [], by) for m in PRETRAINED if m in methods}

    emodb = load_corpus(f"emodb:{DATA / CORPORA['emodb']}", check_audio=True)
    folds = parse_protocol("loso").folds(emodb)
    if folds_cap:
        folds = folds[:folds_cap]
    labels = sorted({u.label for u in emodb})
    results = []  # one row per (method, fraction, seed): UA single and adapted over the pooled folds
    for method in methods:
        section = model_section(method, checkpoints, train_overrides)
        for fraction in fractions:
            for seed in range(seeds) if fraction < 1 else range(1):
                t0 = time.perf_counter()
                pooled = {"single": ([], []), "adapted": ([], [])}
                for fold in folds:
                    train = subsample([emodb[i] for i in fold.train_idx], fraction, seed)
                    test = [emodb[i] for i in fold.test_idx]
                    model = build_model(section).fit(train, progress=False)
                    y = [labels.index(u.label) for u in test]
                    for mode, adapt in (("single", False), ("adapted", True)):
                        p = model.predict_proba_utterances(test, adapt=adapt)
                        pred = [labels.index(model.labels[j]) for j in p.argmax(1)]
                        pooled[mode][0].extend(y)
                        pooled[mode][1].extend(pred)
                row = {
                    "method": method,
                    "fraction": fraction,
                    "seed": seed,
                    "n_folds": len(folds),
                    "seconds": round(time.perf_counter() - t0, 1),
                    **{f"ua_{m}": float(unweighted_accuracy(np.array(a), np.array(b))) for m, (a, b) in pooled.items()},
                }
                results.append(row)
                print(json.dumps(row), flush=True)

    print()
    load = os.getloadavg()
    print(f"EmoDB LOSO ({len(folds)} fold(s){', QUICK smoke run' if args.quick else ''}); load {load[0]:.1f}")
    print("| method | labels | UA single | UA adapted | runs |")
    print("|---|---|---|---|---|")
    table = []
    for method in methods:
        for fraction in fractions:
            rows = [r for r in results if r["method"] == method and r["fraction"] == fraction]
            s = np.array([r["ua_single"] for r in rows])
            a = np.array([r["ua_adapted"] for r in rows])
            table.append(
                {
                    "method": method,
                    "fraction": fraction,
                    "ua_single": [s.mean(), s.std()],
                    "ua_adapted": [a.mean(), a.std()],
                }
            )
            print(
                f"| {method} | {fraction:.0%} | {s.mean():.3f} ± {s.std():.3f} | {a.mean():.3f} ± {a.std():.3f} | {len(rows)} |"
            )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        from serkit.cache import atomic_write_text

        atomic_write_text(args.out, json.dumps({"quick": args.quick, "table": table, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

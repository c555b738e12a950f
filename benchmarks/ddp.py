"""Data-parallel training benchmark: one process vs ``serkit train --nproc N`` on the same recipe and data.

EmoDB, 7 classes: train on every speaker but the held-out ones (default 03 and 16, early
stopping on held-out *training* speakers as usual), score the held-out speakers one clip at a time
(UA single: ``adapt=False``). Each seed is trained once per process count through
:func:`serkit.api.train` (the CLI's path: spawn, per-rank data loading, rank 0 saves). The table
gives UA single and wall time per run, then per process count the mean and the seed spread
(max − min), and the mean difference against one process: "matches within noise" means the
difference is within the one-process seed spread. ``uptime`` is printed before and after (the
machine may be shared).

    python benchmarks/ddp.py                                 # seeds 0-2, 1 and 2 processes
    python benchmarks/ddp.py --seeds 0 --nproc 1,2,4 --set model.train.epochs=4
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
EMODB_LABELS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}

#: the half-width cnn-lstm of tests/test_ddp.py (8-16-32 channels, 64 LSTM units), 2-s crops, 10 epochs
DEFAULT_SET = [
    "model.channels=[8,16,32]",
    "model.lstm_hidden=64",
    "model.train.epochs=10",
    "model.train.cosine_period=10",
    "model.train.crop_seconds=2.0",
]


def _manifests(root: Path, held_out: set[str]) -> tuple[Path, list]:
    from serkit.corpora.base import Utterance

    train, test = [], []
    for f in sorted((DATA / "emodb" / "wav").glob("*.wav")):
        row = {"path": str(f), "label": EMODB_LABELS[f.name[5]], "speaker": f.name[:2]}
        if row["speaker"] in held_out:
            test.append(Utterance(f.stem, row["path"], row["label"], row["speaker"], "emodb"))
        else:
            train.append(row)
    path = root / "train.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
        w.writeheader()
        w.writerows(train)
    return path, test


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="cnn-lstm")
    ap.add_argument(
        "--set", action="append", default=None, dest="overrides", help="recipe overrides (replace the defaults)"
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--held-out", default="03,16")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    import numpy as np

    from serkit.api import train
    from serkit.metrics import unweighted_accuracy
    from serkit.models import load_model

    overrides = args.overrides if args.overrides is not None else DEFAULT_SET
    seeds = [int(s) for s in args.seeds.split(",")]
    nprocs = [int(n) for n in args.nproc.split(",")]
    print(f"# before: {_uptime()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest, test = _manifests(Path(tmp), set(args.held_out.split(",")))
        for seed in seeds:
            for n in nprocs:
                out = Path(tmp) / f"m-{seed}-{n}"
                t0 = time.perf_counter()
                train(
                    [f"manifest:{manifest}"],
                    args.recipe,
                    out=out,
                    overrides=[*overrides, f"model.train.seed={seed}"],
                    nproc=n,
                    progress=False,
                )
                wall = time.perf_counter() - t0
                model, _ = load_model(out)
                proba = model.predict_proba_utterances(test, adapt=False)
                y = np.array([model.labels.index(u.label) for u in test])
                training = json.loads((out / "training.json").read_text()) if (out / "training.json").exists() else {}
                row = {
                    "seed": seed,
                    "nproc": n,
                    "ua_single": round(float(unweighted_accuracy(y, proba.argmax(1))), 4),
                    "wall_s": round(wall, 1),
                    "best_epoch": training.get("best_epoch"),
                    "epochs_run": training.get("epochs_run"),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"# after: {_uptime()}")
    print(
        f"\n{args.recipe} {' '.join(overrides)}; EmoDB, test speakers {args.held_out} ({len(test)} clips, 7 classes)\n"
    )
    print("| seed | " + " | ".join(f"nproc {n}: UA single / wall s / best epoch" for n in nprocs) + " |")
    print("|---|" + "---|" * len(nprocs))
    for seed in seeds:
        cells = []
        for n in nprocs:
            r = next(r for r in rows if r["seed"] == seed and r["nproc"] == n)
            cells.append(f"{r['ua_single']:.3f} / {r['wall_s']:.0f} / {r['best_epoch']} of {r['epochs_run']}")
        print(f"| {seed} | " + " | ".join(cells) + " |")
    base = [r["ua_single"] for r in rows if r["nproc"] == nprocs[0]]
    for n in nprocs:
        ua = [r["ua_single"] for r in rows if r["nproc"] == n]
        wall = [r["wall_s"] for r in rows if r["nproc"] == n]
        print(
            f"nproc {n}: UA single mean {np.mean(ua):.3f} (seed spread {max(ua) - min(ua):.3f}), "
            f"difference to nproc {nprocs[0]} {np.mean(ua) - np.mean(base):+.3f}; wall mean {np.mean(wall):.0f} s"
        )
    if args.json:
        from serkit.cache import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

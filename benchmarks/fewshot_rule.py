"""Choose how few-shot prototypes and the base model's probabilities are combined (serkit.prototypes).

On training corpora only (EmoDB, TESS, RAVDESS sample; 6 classes): the ``default`` recipe is trained
on one corpus and enrolled on another (every ordered pair), episodes of K clips per class from the
target corpus, the rest scored single-utterance. Prints the mean UA over the pairs for each
(ALPHA, SCALE, SHRINK, COV_SHRINK) at K = 1, 5, 10, 20, and the rule that maximises the mean over K;
``--temperatures`` the NLL of the shipped rule per temperature and K.

``--train-pairs`` instead trains on two corpora and enrols on the third (the leave-one-corpus-out
check of the issue), with the shipped rule, against zero-shot and an SVM on the K shots.

    export PYTHONPATH=src SERKIT_DATA=../shared/data
    nice -n 10 python benchmarks/fewshot_rule.py --episodes 5 --alphas 0 0.25 0.5 0.75 1 --scales 0.05 0.2 1 5 --shrinks 1
    nice -n 10 python benchmarks/fewshot_rule.py --episodes 5 --alphas 0 0.1 0.25 1 --shrinks 1 0.05 0.01 --cov-shrinks 1
    nice -n 10 python benchmarks/fewshot_rule.py --episodes 5 --alphas 0 0.1 0.25 --shrinks 0.01 --cov-shrinks 1 0.2 0.05 0.01
    nice -n 10 python benchmarks/fewshot_rule.py --episodes 5 --temperatures
    nice -n 10 python benchmarks/fewshot_rule.py --train-pairs --episodes 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from serkit.corpora import load_corpus
from serkit.evaluation.fewshot import episode_scores
from serkit.models import build_model
from serkit.prototypes import ALPHA, COV_SHRINK, SCALE, SHRINK
from serkit.recipe import load_recipe

DATA = os.environ.get("SERKIT_DATA", "../shared/data")
CORPORA = {"emodb": "emodb", "tess": "tess", "ravdess": "ravdess-sample"}
CACHE = Path(os.environ.get("FEWSHOT_CACHE", "/tmp/serkit-fewshot-cache"))
ALPHAS = (0.0, 0.1, 0.25, 0.5, 1.0)
SCALES = (0.2,)
SHRINKS = (1.0, 0.2, 0.05, 0.01)
SHOTS = (1, 5, 10, 20)


def utterances(name):
    return load_corpus(f"{name}:{DATA}/{CORPORA[name]}", label_set="6class")


def fold_data(train_names, target):
    """Base probabilities and embeddings of the target corpus for a default model trained on ``train_names``."""
    path = CACHE / f"{'+'.join(train_names)}--{target}.npz"
    if path.exists():
        z = np.load(path, allow_pickle=False)
        return list(z["base_labels"]), z["base"], z["emb"], list(z["y"])
    train = [u for n in train_names for u in utterances(n)]
    model = build_model(load_recipe("default").model).fit(train, progress=False)
    test = utterances(target)
    base = model.predict_proba_utterances(test, adapt=False, progress=False)
    emb = model.embed_utterances(test, progress=False)
    y = [str(u.label) for u in test]
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, base_labels=np.array(model.labels), base=base, emb=emb, y=np.array(y))
    return list(model.labels), base, emb, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-pairs", action="store_true")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--temperatures", action="store_true", help="NLL of the shipped ALPHA, SCALE per temperature")
    ap.add_argument("--alphas", type=float, nargs="+", default=ALPHAS)
    ap.add_argument("--scales", type=float, nargs="+", default=SCALES)
    ap.add_argument("--shrinks", type=float, nargs="+", default=SHRINKS, help="1: Euclidean distances")
    ap.add_argument("--cov-shrinks", type=float, nargs="+", default=(COV_SHRINK,), help="1: diagonal only")
    args = ap.parse_args()
    names = list(CORPORA)
    if args.temperatures:
        data = [fold_data([a], b) for a, b in itertools.permutations(names, 2)]
        for k in SHOTS:
            for temp in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0) if k > 1 else (1.0, 4.0, 16.0, 64.0, 256.0):
                runs = [
                    episode_scores(b, lab, e, y, shots=k, episodes=args.episodes, seed=0, temperature=temp, svm=False)
                    for lab, b, e, y in data
                    if min(Counter(y).values()) > k
                ]
                ua = np.mean([r["enrolled"]["ua"]["mean"] for r in runs])
                nll = np.mean([r["enrolled"]["nll"]["mean"] for r in runs])
                print(f"K={k:2d} temperature {temp:5.1f}  mean UA {ua:.3f}  mean NLL {nll:.3f}", flush=True)
        return
    if args.train_pairs:
        folds = [([n for n in names if n != t], t) for t in names]
        for k in SHOTS:
            rows = []
            for train, target in folds:
                labels, base, emb, y = fold_data(train, target)
                if min(Counter(y).values()) <= k:
                    continue
                s = episode_scores(base, labels, emb, y, shots=k, episodes=args.episodes, seed=0)
                rows.append((target, s))
            print(f"K={k}")
            for target, s in rows:
                print(
                    f"  {target:8s} zero-shot {s['zero_shot']['ua']['mean']:.3f}  enrolled {s['enrolled']['ua']['mean']:.3f}"
                    f" ±{s['enrolled']['ua']['ci95']:.3f}  svm {s['svm']['ua']['mean']:.3f}"
                )
            mean = {m: np.mean([s[m]["ua"]["mean"] for _, s in rows]) for m in ("zero_shot", "enrolled", "svm")}
            print("  mean     " + "  ".join(f"{m} {v:.3f}" for m, v in mean.items()))
        return
    pairs = [([a], b) for a, b in itertools.permutations(names, 2)]
    data = [fold_data(tr, t) for tr, t in pairs]
    table = {}
    for alpha, scale, shrink, cov in itertools.product(args.alphas, args.scales, args.shrinks, args.cov_shrinks):
        if alpha == 1.0 and (scale, shrink, cov) != (args.scales[0], args.shrinks[0], args.cov_shrinks[0]):
            continue  # the base alone: the prototypes do not matter
        per_k, nll_k = {}, {}
        for k in SHOTS:
            runs = [
                episode_scores(b, lab, e, y, shots=k, episodes=args.episodes, seed=0, alpha=alpha, scale=scale,
                               shrink=shrink, cov_shrink=cov, svm=False)["enrolled"]
                for lab, b, e, y in data
                if min(Counter(y).values()) > k  # RAVDESS sample: 16 clips of most classes, no K=20
            ]  # fmt: skip
            per_k[k] = float(np.mean([r["ua"]["mean"] for r in runs]))
            nll_k[k] = float(np.mean([r["nll"]["mean"] for r in runs]))
        table[(alpha, scale, shrink, cov)] = (per_k, nll_k)
        print(f"alpha {alpha:.2f} scale {scale:5.2f} shrink {shrink:4.2f} cov {cov:4.2f}  " + "  ".join(f"K={k} {v:.3f}" for k, v in per_k.items())
              + f"  mean UA {np.mean(list(per_k.values())):.3f}  mean NLL {np.mean(list(nll_k.values())):.3f}",
              flush=True)  # fmt: skip
    # UA first (to 3 decimals: with alpha 0 the scale cannot change a decision), then NLL
    best = max(
        table, key=lambda key: (round(np.mean(list(table[key][0].values())), 3), -np.mean(list(table[key][1].values())))
    )
    print("best", best, json.dumps(table[best]), "shipped", (ALPHA, SCALE, SHRINK, COV_SHRINK))


if __name__ == "__main__":
    main()

"""Compression benchmark: size, one-thread latency and accuracy of every compression step, side by side.

Trains a SoundNet8 classifier (frozen pretrained backbone cut after ``--layer``, mean+std pooling,
per-speaker normalisation) on EmoDB speakers it is then tested against none of, and derives from it
the variants below. ``--split halves`` (default) does it twice, both directions of a 5/5 speaker
split (test on 03 08 09 10 11, then on 12 13 14 15 16), and scores the pooled predictions of all
535 clips; ``--split fixed`` trains once on 8 speakers and tests on 03 (male) and 08 (female), 107
clips, where one clip is about one UA point. Variants:

* ONNX fp32 and ONNX int8 (static QDQ, per-channel, calibrated on training clips: post-training quantisation);
* quantisation-aware fine-tuning (``--qat-epochs``) and its ONNX int8 export;
* pruned models (30 % and 50 % of every layer's channels, ``--finetune-epochs`` of fine-tuning);
* a distilled ``soundnet-res`` student (``--distil-epochs``) and its ONNX int8 export.

Columns: size of the weights file (MB), parameters, latency of one 1-s window on one thread
(median / p95 over 300 calls, :func:`speed.latency_ms`; sizes and latencies from the first fold's
models), UA on the test speakers speaker-adapted (each test speaker's statistics from its own
unlabelled utterances; torch models only, an ONNX graph carries the training-set statistics) and
single-utterance (training-set statistics), their change against the baseline in UA points, and,
for every ONNX model against the model it was exported from (single-utterance): the change in UA
points (``d_ua_source``: what the export step costs, with a 95 % paired bootstrap interval over the
test clips), top-1 agreement
and mean / max absolute difference of the probabilities (``dp``). ``int8`` rows use
``serkit export --quantise int8`` as shipped (calibrated on the fold's training clips).

    nice -n 10 python benchmarks/compression.py --json runs/compression.json
    python benchmarks/compression.py --only-export          # baseline, ONNX fp32 and int8 only
    python benchmarks/compression.py --layer conv5 --split fixed --distil-epochs 0   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import _dir_mb, latency_ms, one_window

#: test speakers of each fold: ``fixed`` is one fold, ``halves`` both directions of a 5/5 split
SPLITS = {
    "fixed": (("03", "08"),),
    "halves": (("03", "08", "09", "10", "11"), ("12", "13", "14", "15", "16")),
}


def _ua(y, pred) -> float:
    from serkit.metrics import unweighted_accuracy

    return unweighted_accuracy(y, pred)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", default=os.environ.get("SERKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    )
    ap.add_argument(
        "--layer",
        default="conv4",
        help="SoundNet8 cut of the baseline (default conv4, as the soundnet-finetune recipe)",
    )
    ap.add_argument("--finetune-epochs", type=int, default=4, help="fine-tune epochs after pruning (default 4)")
    ap.add_argument("--qat-epochs", type=int, default=4, help="quantisation-aware fine-tune epochs (default 4)")
    ap.add_argument("--distil-epochs", type=int, default=8, help="student epochs; 0 skips distillation (default 8)")
    ap.add_argument(
        "--split",
        choices=sorted(SPLITS),
        default="halves",
        help="halves: both directions of a 5/5 speaker split, 535 test clips (default); fixed: test on 03 and 08",
    )
    ap.add_argument(
        "--only-export", action="store_true", help="baseline, ONNX fp32 and ONNX int8 only (no QAT, pruning, student)"
    )
    ap.add_argument("--latency-calls", type=int, default=300)
    ap.add_argument("--out", default=None, help="keep the model folders here (default: a temporary folder)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)

    from serkit.artifact import save_model
    from serkit.corpora import load_corpus
    from serkit.deploy.compress import distil, prune, quantisation_aware
    from serkit.deploy.export import export_onnx
    from serkit.inference import Recognizer
    from serkit.models import load_model
    from serkit.models.neural import SoundNetClassifier
    from serkit.networks.pruning import count_parameters

    emodb = Path(args.data) / "emodb"
    if not (emodb / "wav").is_dir():
        print(f"EmoDB not found at '{emodb}'; pass --data or set SERKIT_DATA", file=sys.stderr)
        return 2
    spec = f"emodb:{emodb}"
    utterances = load_corpus(spec)
    if args.only_export:
        args.qat_epochs = args.finetune_epochs = args.distil_epochs = 0
    root = Path(args.out or tempfile.mkdtemp(prefix="serkit-compression-"))
    root.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_all:6.0f}s] {msg}", file=sys.stderr, flush=True)

    sources: dict[str, str] = {}  # ONNX row -> the torch row it was exported from
    folds = []  # per fold: {"dirs", "seconds", "test", "n_train"}
    for k, test_speakers in enumerate(SPLITS[args.split]):
        train = [u for u in utterances if u.speaker not in test_speakers]
        test = [u for u in utterances if u.speaker in test_speakers]
        fold_root = root / f"fold{k}" if len(SPLITS[args.split]) > 1 else root
        dirs: dict[str, Path] = {}
        seconds: dict[str, float] = {}
        folds.append(
            {"dirs": dirs, "seconds": seconds, "test": test, "n_train": len(train), "test_speakers": test_speakers}
        )

        def keep(name, model, train=train, dirs=dirs, fold_root=fold_root):
            dirs[name] = save_model(model, fold_root / name, trained_on={"corpora": [spec], "n_utterances": len(train)})

        def export(name, source, quantise, train=train, dirs=dirs, seconds=seconds, fold_root=fold_root):
            t0 = time.perf_counter()
            dirs[name] = export_onnx(
                dirs[source], fold_root / name, quantise=quantise, calibration=[u.path for u in train]
            )
            sources[name] = source
            seconds[name] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        base = SoundNetClassifier(
            layer=args.layer, pool="meanstd", strategy="freeze", train={"normalisation": "speaker"}
        )
        base.fit(train, progress=False)
        seconds["baseline"] = round(time.perf_counter() - t0, 1)
        keep("baseline", base)
        log(f"fold {k}: baseline trained ({seconds['baseline']}s)")
        export("baseline-onnx", "baseline", None)
        export("baseline-int8", "baseline", "int8")
        log(f"fold {k}: baseline exported")
        if args.qat_epochs:
            t0 = time.perf_counter()
            keep("qat", quantisation_aware(base, train, epochs=args.qat_epochs))
            seconds["qat"] = round(time.perf_counter() - t0, 1)
            export("qat-int8", "qat", "int8")
            log(f"fold {k}: QAT done ({seconds['qat']}s)")
        for amount in (0.3, 0.5) if args.finetune_epochs else ():
            name = f"pruned-{int(amount * 100)}"
            t0 = time.perf_counter()
            keep(name, prune(base, train, amount=amount, finetune_epochs=args.finetune_epochs))
            seconds[name] = round(time.perf_counter() - t0, 1)
            export(f"{name}-int8", name, "int8")
            log(f"fold {k}: {name} done ({seconds[name]}s)")
        if args.distil_epochs:
            t0 = time.perf_counter()
            keep("student", distil(base, train, epochs=args.distil_epochs, progress=True))
            seconds["student"] = round(time.perf_counter() - t0, 1)
            export("student-int8", "student", "int8")
            log(f"fold {k}: student done ({seconds['student']}s)")

    labels = list(base.labels_)
    y = np.concatenate([[labels.index(u.label) for u in f["test"]] for f in folds])
    rows, p_single = [], {}
    for name in folds[0]["dirs"]:
        is_onnx = name in sources
        singles, adapted = [], []
        for f in folds:
            clf = Recognizer.load(f["dirs"][name]).classifier
            if is_onnx:
                singles.append(clf.predict_proba([_read(u, clf.sampling_rate) for u in f["test"]]))
            else:
                singles.append(clf.predict_proba_utterances(f["test"], adapt=False))
                adapted.append(clf.predict_proba_utterances(f["test"], adapt=True).argmax(1))
        p_single[name] = np.concatenate(singles)
        path = folds[0]["dirs"][name]
        clf = Recognizer.load(path).classifier  # sizes and latencies: the first fold's models
        row = {
            "model": name,
            "size_mb": round(_dir_mb(path), 3),
            "parameters": count_parameters(clf.net_)
            if not is_onnx
            else count_parameters(load_model(folds[0]["dirs"][sources[name]])[0].net_),
            **latency_ms(lambda clf=clf: one_window(clf), n=args.latency_calls),
            "ua_adapted": None if is_onnx else round(_ua(y, np.concatenate(adapted)), 4),
            "ua_single": round(_ua(y, p_single[name].argmax(1)), 4),
            "ua_single_folds": [round(_ua(y_f, p_f.argmax(1)), 4) for y_f, p_f in _by_fold(folds, labels, singles)],
            "agree_source": None,
            "mean_dp": None,
            "max_dp": None,
            "build_s": folds[0]["seconds"].get(name),
        }
        if is_onnx:
            ref = p_single[sources[name]]
            dp = np.abs(p_single[name] - ref)
            row.update(
                agree_source=round(float(np.mean(p_single[name].argmax(1) == ref.argmax(1))), 4),
                mean_dp=round(float(dp.mean()), 4),
                max_dp=round(float(dp.max()), 3),
            )
        rows.append(row)
        log(f"measured {name}")
    base_row = rows[0]
    for r in rows:
        for col in ("ua_adapted", "ua_single"):
            r[f"d_{col}"] = None if r[col] is None else round(100 * (r[col] - base_row[col]), 1)
        source = next((q for q in rows if q["model"] == sources.get(r["model"])), None)
        r["d_ua_source"] = None if source is None else round(100 * (r["ua_single"] - source["ua_single"]), 1)
        r["d_ua_source_ci95"] = (
            None
            if source is None
            else _paired_ci(y, p_single[source["model"]].argmax(1), p_single[r["model"]].argmax(1))
        )

    cols = [
        "model",
        "size_mb",
        "parameters",
        "lat_ms_median",
        "lat_ms_p95",
        "ua_adapted",
        "d_ua_adapted",
        "ua_single",
        "d_ua_single",
        "d_ua_source",
        "d_ua_source_ci95",
        "agree_source",
        "mean_dp",
        "max_dp",
        "build_s",
    ]
    print(f"| {' | '.join(cols)} |")
    print(f"|{'|'.join('---' for _ in cols)}|")
    for r in rows:
        print(f"| {' | '.join('–' if r[c] is None else str(r[c]) for c in cols)} |")
    folds_txt = "; ".join(
        f"train {f['n_train']} utterances, test {len(f['test'])} of speakers {' '.join(f['test_speakers'])}"
        for f in folds
    )
    print(
        f"\nEmoDB, {args.split} split ({folds_txt}), UA on the pooled {len(y)} test predictions; baseline SoundNet8 "
        f"{args.layer} meanstd, speaker-normalised, frozen; d_ua_* in UA points against the baseline; "
        f"agree_source / mean_dp / max_dp: ONNX model against its source, single-utterance; latency: one 1-s "
        f"window, one thread; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if args.json:
        from serkit.cache import atomic_write_text

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "split": args.split,
                    "test_speakers": [f["test_speakers"] for f in folds],
                    "layer": args.layer,
                    "rows": rows,
                },
                indent=2,
            ),
        )
    return 0


def _paired_ci(y, pred_a, pred_b, n: int = 2000) -> list[float]:
    """95 % interval of UA(pred_b) - UA(pred_a) in points, resampling test clips (both models on the same draw)."""
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        diffs.append(_ua(y[i], pred_b[i]) - _ua(y[i], pred_a[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return [round(100 * float(lo), 1), round(100 * float(hi), 1)]


def _by_fold(folds, labels, per_fold):
    for f, p in zip(folds, per_fold):
        yield np.array([labels.index(u.label) for u in f["test"]]), p


def _read(u, sampling_rate):
    from serkit.models.neural import read_cached

    return read_cached(u.path, sampling_rate, u.start, u.end)


if __name__ == "__main__":
    raise SystemExit(main())

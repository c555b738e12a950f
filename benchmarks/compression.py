"""Compression benchmark: size, one-thread latency and accuracy of every compression step, side by side.

Trains a SoundNet8 classifier (frozen pretrained backbone cut after ``--layer``, mean+std pooling,
per-speaker normalisation) on a fixed EmoDB speaker split — train on 8 speakers, test on speakers
03 (male) and 08 (female), never seen in training or validation — and derives from it:

* ONNX fp32 and ONNX int8 (static QDQ, per-channel, calibrated on training clips: post-training quantisation);
* quantisation-aware fine-tuning (``--qat-epochs``) and its ONNX int8 export;
* pruned models (30 % and 50 % of every layer's channels, ``--finetune-epochs`` of fine-tuning);
* a distilled ``soundnet-res`` student (``--distill-epochs``) and its ONNX int8 export.

Columns: size of the weights file (MB), parameters, latency of one 1-s window on one thread
(median / p95 over 300 calls, :func:`speed.latency_ms`), UA on the two test speakers
speaker-adapted (each test speaker's statistics from its own unlabelled utterances; torch models
only, an ONNX graph carries the training-set statistics) and single-utterance (training-set
statistics), their change against the baseline in UA points, and top-1 agreement of every
ONNX model with the torch model it was exported from (single-utterance).

    nice -n 10 python benchmarks/compression.py --json runs/compression.json
    python benchmarks/compression.py --layer conv5 --distill-epochs 0   # quicker, no student
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

TEST_SPEAKERS = ("03", "08")


def _ua(y, pred) -> float:
    classes = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in classes]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("SERKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    ap.add_argument("--layer", default="conv4", help="SoundNet8 cut of the baseline (default conv4, as the soundnet-finetune recipe)")
    ap.add_argument("--finetune-epochs", type=int, default=4, help="fine-tune epochs after pruning (default 4)")
    ap.add_argument("--qat-epochs", type=int, default=4, help="quantisation-aware fine-tune epochs (default 4)")
    ap.add_argument("--distill-epochs", type=int, default=8, help="student epochs; 0 skips distillation (default 8)")
    ap.add_argument("--latency-calls", type=int, default=300)
    ap.add_argument("--out", default=None, help="keep the model folders here (default: a temporary folder)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)

    from serkit.artifact import load_model, save_model
    from serkit.compress import count_parameters, distill, prune, quantization_aware
    from serkit.corpora import load_corpus
    from serkit.export import export_onnx
    from serkit.inference import Recognizer
    from serkit.models.neural import SoundNetClassifier

    emodb = Path(args.data) / "emodb"
    if not (emodb / "wav").is_dir():
        print(f"EmoDB not found at '{emodb}'; pass --data or set SERKIT_DATA", file=sys.stderr)
        return 2
    spec = f"emodb:{emodb}"
    utterances = load_corpus(spec)
    train = [u for u in utterances if u.speaker not in TEST_SPEAKERS]
    test = [u for u in utterances if u.speaker in TEST_SPEAKERS]
    calibration = [u.path for u in train]
    root = Path(args.out or tempfile.mkdtemp(prefix="serkit-compression-"))
    root.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_all:6.0f}s] {msg}", file=sys.stderr, flush=True)

    dirs: dict[str, Path] = {}
    sources: dict[str, str] = {}  # ONNX row -> the torch row it was exported from
    seconds: dict[str, float] = {}

    def keep(name, model, **kw):
        dirs[name] = save_model(model, root / name, trained_on={"corpora": [spec], "n_utterances": len(train)}, **kw)

    def export(name, source, quantize):
        t0 = time.perf_counter()
        dirs[name] = export_onnx(dirs[source], root / name, quantize=quantize, calibration=calibration)
        sources[name] = source
        seconds[name] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    base = SoundNetClassifier(layer=args.layer, pool="meanstd", strategy="freeze", train={"normalisation": "speaker"})
    base.fit(train, progress=False)
    seconds["baseline"] = round(time.perf_counter() - t0, 1)
    keep("baseline", base)
    log(f"baseline trained ({seconds['baseline']}s)")
    export("baseline-onnx", "baseline", None)
    export("baseline-int8", "baseline", "int8")
    log("baseline exported")
    if args.qat_epochs:
        t0 = time.perf_counter()
        keep("qat", quantization_aware(base, train, epochs=args.qat_epochs))
        seconds["qat"] = round(time.perf_counter() - t0, 1)
        export("qat-int8", "qat", "int8")
        log(f"QAT done ({seconds['qat']}s)")
    for amount in (0.3, 0.5):
        name = f"pruned-{int(amount * 100)}"
        t0 = time.perf_counter()
        keep(name, prune(base, train, amount=amount, finetune_epochs=args.finetune_epochs))
        seconds[name] = round(time.perf_counter() - t0, 1)
        export(f"{name}-int8", name, "int8")
        log(f"{name} done ({seconds[name]}s)")
    if args.distill_epochs:
        t0 = time.perf_counter()
        keep("student", distill(base, train, epochs=args.distill_epochs, progress=True))
        seconds["student"] = round(time.perf_counter() - t0, 1)
        export("student-int8", "student", "int8")
        log(f"student done ({seconds['student']}s)")

    labels = list(base.labels_)
    y = np.array([labels.index(u.label) for u in test])
    rows, single_pred = [], {}
    for name, path in dirs.items():
        rec = Recognizer.load(path)
        clf = rec.classifier
        is_onnx = name in sources
        p_single = clf.predict_proba_utterances(test, adapt=False) if not is_onnx else clf.predict_proba(
            [_read(u, clf.sampling_rate) for u in test])
        single_pred[name] = p_single.argmax(1)
        row = {
            "model": name,
            "size_mb": round(_dir_mb(path), 3),
            "parameters": count_parameters(clf.net_) if not is_onnx else count_parameters(load_model(dirs[sources[name]])[0].net_),
            **latency_ms(lambda clf=clf: one_window(clf), n=args.latency_calls),
            "ua_adapted": None if is_onnx else round(_ua(y, clf.predict_proba_utterances(test, adapt=True).argmax(1)), 4),
            "ua_single": round(_ua(y, single_pred[name]), 4),
            "agree_source": round(float(np.mean(single_pred[name] == single_pred[sources[name]])), 4) if is_onnx else None,
            "build_s": seconds.get(name),
        }
        rows.append(row)
        log(f"measured {name}")
    base_row = rows[0]
    for r in rows:
        for col in ("ua_adapted", "ua_single"):
            r[f"d_{col}"] = None if r[col] is None else round(100 * (r[col] - base_row[col]), 1)

    cols = ["model", "size_mb", "parameters", "lat_ms_median", "lat_ms_p95", "ua_adapted", "d_ua_adapted",
            "ua_single", "d_ua_single", "agree_source", "build_s"]
    print(f"| {' | '.join(cols)} |")
    print(f"|{'|'.join('---' for _ in cols)}|")
    for r in rows:
        print(f"| {' | '.join('–' if r[c] is None else str(r[c]) for c in cols)} |")
    print(f"\nEmoDB, train on {len(train)} utterances of 8 speakers, test on {len(test)} of speakers "
          f"{' and '.join(TEST_SPEAKERS)}; baseline SoundNet8 {args.layer} meanstd, speaker-normalised, frozen; "
          f"d_ua_* in UA points against the baseline; latency: one 1-s window, one thread; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"test_speakers": TEST_SPEAKERS, "layer": args.layer, "rows": rows}, indent=2))
    return 0


def _read(u, sampling_rate):
    from serkit.models.neural import read_cached

    return read_cached(u.path, sampling_rate, u.start, u.end)


if __name__ == "__main__":
    raise SystemExit(main())

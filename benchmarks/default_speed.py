"""The shipped default model from the command line: first-run latency, TESS throughput, one window, agreement.

Issue 17's speed and deployment table. Every timing is a fresh ``serkit`` process, measured from
process start to its exit (the printed row, the written table), so imports and model loading count:

* ``serkit predict ONE.wav`` — median of ``--repeats`` runs (after one warm-up run that fills the
  OS file cache), for the shipped model (its ONNX chain: numpy front end, GE2E network and
  classifier in onnxruntime) and for the same folder without its graphs (torch GE2E,
  scikit-learn classifier: how it predicted before the export);
* ``serkit predict TESS/ --out T.csv`` on all 2 800 TESS files (decoding included): seconds of
  audio per wall second and the peak resident memory of the process tree's largest process;
* one 1-s window, in process, on one thread (median of 300 calls after 30 warm-up calls), and
  each feature set's extractor alone on that window (where the window's time goes);
* label agreement of the two on the 2 800 TESS files.

    python benchmarks/default_speed.py                 # ${SERKIT_DATA:-../shared/data}/tess
    python benchmarks/default_speed.py --repeats 3 --skip-python   # the chain only
    python benchmarks/default_speed.py --window-only --model DIR   # another model folder's 1-s window
    python benchmarks/default_speed.py --int8-ge2e     # what int8 GE2E graphs would buy, and cost

``--int8-ge2e`` copies the shipped model twice with its GE2E graph quantised by onnxruntime's
dynamic int8 quantisation (per-channel int8 weights, ``DynamicQuantizeLSTM``: the only LSTM kernel
it has that is faster than float32): all three LSTM layers, and the first alone. For each copy and
the shipped chain it gives the 1-s window, the TESS labels' agreement with the shipped chain and
the TESS UA against the corpus' own labels (TESS is one of the training corpora, so this UA is not
an unseen-corpus score; it shows how far the quantised features move the same classifier).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SERKIT_DATA", ROOT.parent / "shared" / "data"))
SERKIT = [sys.executable, "-m", "serkit.cli"]


def python_copy(where: Path) -> Path:
    """The default model folder without its exported graphs (``config.onnx`` removed)."""
    from serkit.inference import DEFAULT_MODEL_DIR

    d = where / "default-python"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    meta = json.loads((d / "model.json").read_text())
    meta["config"].pop("onnx", None)
    (d / "model.json").write_text(json.dumps(meta))
    return d


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the child, stdout) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far (KiB)
    return wall, max(peak, before) / 1024, out.stdout


def first_run(model: list[str], wav: Path, repeats: int) -> float:
    timed([*SERKIT, "predict", str(wav), "-q", *model])
    return statistics.median(timed([*SERKIT, "predict", str(wav), "-q", *model])[0] for _ in range(repeats))


def window_ms(model_dir) -> dict:
    """Median ms of one 1-s window on one thread: the whole prediction, then each feature set's
    extractor alone (the rest — standardisation, classifier, calibration — is the difference)."""
    from serkit.models import load_model

    # one thread for this process only: the `serkit predict` runs after it keep theirs
    with mock.patch.dict(os.environ, {"SERKIT_THREADS": "1"}):
        return _window_ms(load_model(model_dir)[0])


def _window_ms(model) -> dict:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    x = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)
    calls = {"window_1s_ms": lambda: model.predict_proba([x], adapt=False)}
    for e in model._extractors():
        calls[f"window_{e.name}_ms"] = lambda e=e: e.functionals_batch([x])
    for fn in calls.values():
        for _ in range(30):
            fn()
    times = {k: [] for k in calls}
    for _ in range(300):  # interleaved, so a slower spell of the machine weighs on every column alike
        for k, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: round(1000 * float(np.median(v)), 2) for k, v in times.items()}


def quantised_copy(where: Path, name: str, first_only: bool) -> Path:
    """The shipped model folder with its GE2E graph dynamically quantised to int8 (per-channel weights):
    every LSTM, or only the first (``first_only``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from serkit.inference import DEFAULT_MODEL_DIR

    d = where / name
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    graph = d / "ge2e_0.onnx"
    lstms = [n.name for n in onnx.load(str(graph)).graph.node if n.op_type == "LSTM"]
    fp32 = where / f"{name}.fp32.onnx"
    graph.replace(fp32)
    quantize_dynamic(
        str(fp32),
        str(graph),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["LSTM"],
        nodes_to_exclude=lstms[1:] if first_only else [],
    )
    return d


def tess_ua(table) -> float:
    """Unweighted accuracy of a ``serkit predict`` table against TESS's own 6-class labels."""
    from serkit.corpora import load_corpus
    from serkit.metrics import unweighted_accuracy

    truth = {str(Path(u.path).resolve()): u.label for u in load_corpus(f"tess:{DATA / 'tess'}", label_set="6class")}
    files = [str(Path(f).resolve()) for f in table["file"]]
    keep = [i for i, f in enumerate(files) if f in truth]
    return float(unweighted_accuracy([truth[files[i]] for i in keep], table["label"].to_numpy()[keep]))


def int8_ge2e(json_path: str | None) -> int:
    import pandas as pd

    from serkit.inference import DEFAULT_MODEL_DIR

    rows, ref = [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {
            "shipped (float32 GE2E)": DEFAULT_MODEL_DIR,
            "int8 GE2E, all three LSTMs": quantised_copy(tmp, "int8-all", False),
            "int8 GE2E, first LSTM only": quantised_copy(tmp, "int8-first", True),
        }
        for name, folder in models.items():
            out = tmp / f"{len(rows)}.csv"
            wall, _, _ = timed(
                [*SERKIT, "predict", str(DATA / "tess"), "--out", str(out), "-q", "--model", str(folder)]
            )
            table = pd.read_csv(out)
            ref = table if ref is None else ref  # the shipped chain's labels, the first row's
            rows.append(
                {
                    "model": name,
                    "tess_agreement_with_shipped": round(float((table["label"] == ref["label"]).mean()), 4),
                    "tess_ua": round(tess_ua(table), 4),
                    "tess_wall_s": round(wall, 1),
                    **window_ms(folder),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return report(rows, json_path)


def report(rows: list[dict], json_path: str | None) -> int:
    """Print the rows as a table with the load average, and write them to ``json_path`` when given."""
    print()
    for r in rows:
        print(" | ".join(f"{k}={v}" for k, v in r.items()))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if json_path:
        from serkit.cache import atomic_write_text

        atomic_write_text(json_path, json.dumps(rows, indent=2))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs of `serkit predict ONE.wav` (median)")
    ap.add_argument("--skip-python", action="store_true", help="measure the ONNX chain only")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--model", default=None, help="a model folder to measure instead of the shipped one")
    ap.add_argument("--window-only", action="store_true", help="only the in-process 1-s window (no TESS runs)")
    ap.add_argument(
        "--int8-ge2e", action="store_true", help="the shipped model with int8 GE2E graphs: speed and labels"
    )
    args = ap.parse_args(argv)
    from serkit.inference import DEFAULT_MODEL_DIR

    chain = Path(args.model) if args.model else DEFAULT_MODEL_DIR
    if args.window_only:
        row = {"model": str(chain), **window_ms(chain)}
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
        print(f"load average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        return 0
    tess = DATA / "tess"
    if not tess.is_dir():
        print(f"default_speed: {tess} not found; set SERKIT_DATA", file=sys.stderr)
        return 2
    if args.int8_ge2e:
        return int8_ge2e(args.json)
    import pandas as pd

    wav = sorted((DATA / "emodb" / "wav").glob("*.wav"))[0] if (DATA / "emodb").is_dir() else next(tess.rglob("*.*"))
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            models = {str(chain): (["--model", str(chain)], chain)}
        else:
            models = {"onnx chain (shipped)": ([], chain)}
        if not args.skip_python and not args.model:
            py = python_copy(tmp)
            models["torch + scikit-learn"] = (["--model", str(py)], py)
        for name, (flag, folder) in models.items():
            one = first_run(flag, wav, args.repeats)
            out = tmp / f"{len(tables)}.csv"
            wall, peak, _ = timed([*SERKIT, "predict", str(tess), "--out", str(out), "-q", *flag])
            table = pd.read_csv(out)
            tables[name] = table
            audio = float((table["end"] - table["start"]).sum())
            rows.append(
                {
                    "model": name,
                    "predict_one_file_s": round(one, 2),
                    "tess_files": len(table),
                    "tess_errors": int(table["error"].notna().sum()),
                    "tess_wall_s": round(wall, 1),
                    "x_realtime": round(audio / wall, 1),
                    "peak_rss_mb": round(peak),
                    **window_ms(folder),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if len(tables) == 2:
        a, b = tables.values()
        agree = float((a["label"].to_numpy() == b["label"].to_numpy()).mean())
        dp = float(np.abs(a.filter(like="p_").to_numpy() - b.filter(like="p_").to_numpy()).max())
        rows.append({"model": "agreement on TESS labels", "agreement": round(agree, 4), "max_abs_dp": dp})
    return report(rows, args.json)


if __name__ == "__main__":
    sys.exit(main())

"""Scale benchmark: files/s of ``serkit predict`` on the local engine and on Ray with 1 and 2 workers.

Runs the shipped default model (or ``--model``) over TESS (2 800 files) or its first ``--limit N``
files, and prints one row per engine: wall time, start-up (model loads; for Ray also the local Ray
and its worker processes), steady-state files/s once the first rows are back, and milliseconds per
file. The Ray path's per-file overhead is its 1-worker steady ms/file less the local engine's on one
thread (``SERKIT_THREADS=1 SERKIT_JOBS=1``: one core, as one Ray actor has). Note the machine's
load (printed) next to any number you quote: the Ray rows share the same cores.

    python benchmarks/scale.py                     # all of TESS under ${SERKIT_DATA:-../shared/data}
    python benchmarks/scale.py --limit 200 --json  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def tess_files(limit: int | None) -> list[str]:
    root = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "tess"
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        sys.exit(f"no TESS audio under {root} (set SERKIT_DATA)")
    if limit:  # every k-th file: all speakers and emotions even in a quick run
        step = max(1, len(files) // limit)
        files = files[::step][:limit]
    return files


def run_local(files, model, threads: int | None) -> dict:
    from serkit.inference import Recognizer

    if threads:
        os.environ["SERKIT_THREADS"] = os.environ["SERKIT_JOBS"] = str(threads)
    try:
        t0 = time.perf_counter()
        rec = Recognizer.load(model)
        rec.predict_batch(files[:1])  # warm-up: lazy imports, first-call set-up
        t1 = time.perf_counter()
        table = rec.predict_batch(files[1:])
        t2 = time.perf_counter()
    finally:
        for k in ("SERKIT_THREADS", "SERKIT_JOBS"):
            if threads:
                os.environ.pop(k, None)
    n = len(files) - 1
    return {
        "engine": f"local ({threads or 'all'} thread{'s' if threads != 1 else ''})",
        "workers": threads or os.cpu_count(),
        "files": len(files),
        "errors": int((table["error"] != "").sum()),
        "wall_s": round(t2 - t0, 2),
        "startup_s": round(t1 - t0, 2),
        "steady_files_per_s": round(n / (t2 - t1), 2),
    }


def run_ray(files, model, workers: int) -> dict:
    import ray

    from serkit.engines.ray_engine import predict

    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            s = predict(files, out, model=model, workers=workers, shard_rows=500)
            wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    return {
        "engine": "ray",
        "workers": workers,
        "files": len(files),
        "errors": s["errors"],
        "wall_s": round(wall, 2),
        "startup_s": s["startup_s"],
        "steady_files_per_s": s["steady_files_per_s"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="use N files spread over TESS (default all 2 800)")
    ap.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to run (default 1,2)")
    ap.add_argument("--json", action="store_true", help="print JSON rows")
    args = ap.parse_args(argv)
    files = tess_files(args.limit)
    load = os.getloadavg()
    rows = [run_local(files, args.model, None), run_local(files, args.model, 1)]
    rows += [run_ray(files, args.model, int(w)) for w in args.workers.split(",")]
    for r in rows:
        r["ms_per_file"] = round(1000 / r["steady_files_per_s"], 1) if r["steady_files_per_s"] else None
    one_thread = rows[1]["ms_per_file"]
    ray1 = next((r for r in rows if r["engine"] == "ray" and r["workers"] == 1), None)
    overhead = round(ray1["ms_per_file"] - one_thread, 1) if ray1 and ray1["ms_per_file"] and one_thread else None
    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({"rows": rows, "ray_overhead_ms_per_file": overhead, "load": [load, load_after]}, indent=2))
        return 0
    print(
        f"{len(files)} TESS files, {os.cpu_count()} cores, load average {load[0]:.2f} before / {load_after[0]:.2f} after"
    )
    print(
        f"{'engine':22s} {'workers':>7s} {'wall s':>8s} {'start-up s':>10s} {'files/s':>8s} {'ms/file':>8s} {'errors':>6s}"
    )
    for r in rows:
        print(
            f"{r['engine']:22s} {r['workers']:7d} {r['wall_s']:8.1f} {r['startup_s'] or 0:10.1f} "
            f"{r['steady_files_per_s'] or 0:8.2f} {r['ms_per_file'] or 0:8.1f} {r['errors']:6d}"
        )
    print(f"Ray per-file overhead (1 worker vs local on 1 thread): {overhead} ms/file")
    return 0


if __name__ == "__main__":
    sys.exit(main())

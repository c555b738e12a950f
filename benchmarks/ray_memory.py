"""Memory of ``serkit predict --engine ray`` as the listing grows: peak RSS of the driver and of Ray's workers.

Predicts N TESS files (spread over speakers and emotions) with the default model on a local Ray
(2 CPUs, 1 actor) and samples the summed resident memory of every ``ray::`` process every 0.5 s
(shared pages count once per process, so it overstates). Run it for two sizes: a bounded pipeline
grows far slower than the listing.

    python benchmarks/ray_memory.py 300
    python benchmarks/ray_memory.py 2800
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path


def ray_rss_mb() -> float:
    total_kb = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if not (p / "cmdline").read_bytes().startswith(b"ray::"):
                continue
            for line in (p / "status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def main() -> int:
    import ray

    from serkit.engines.ray_engine import predict

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    root = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "tess"
    files = sorted(str(p) for p in root.rglob("*.flac")) or sorted(str(p) for p in root.rglob("*.wav"))
    files = files[:: max(1, len(files) // n)][:n]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    peak, done = [0.0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], ray_rss_mb())
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    with tempfile.TemporaryDirectory() as out:
        s = predict(files, out, workers=1)
    done.set()
    ray.shutdown()
    print(
        json.dumps(
            {
                "files": len(files),
                "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "ray_workers_peak_rss_mb": round(peak[0]),
                "wall_s": s["wall_s"],
                "files_per_s": s["files_per_s"],
                "steady_files_per_s": s["steady_files_per_s"],
                "errors": s["errors"],
                "load": os.getloadavg()[0],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

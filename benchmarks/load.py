"""Bounded load test of ``serkit serve`` on loopback: throughput, latency percentiles, errors, memory.

Starts the service in a subprocess (``serkit serve``), sends a fixed number of ``POST /v1/predict``
requests from ``--clients`` concurrent clients (real EmoDB clips), in ``--rounds`` rounds, and
prints one table. The server's resident memory (``/proc/PID/status`` VmRSS, children included) is
read after every round: after the first (warm-up) round it must stay within ``--max-rss-growth-mb``.
Exits 1 on any failed request or unstable memory.

    python benchmarks/load.py --model models/emodb --clients 32 --requests 320 --rounds 3

Without ``--model``, an egemaps-svm model is trained on ``$SERKIT_DATA/emodb`` first (~20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB), from /proc."""
    total = 0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


async def run_round(url: str, clips: list[tuple[str, bytes]], n_requests: int, n_clients: int, api_key: str | None):
    import httpx

    latencies, errors = [], []
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(n_requests):
        queue.put_nowait(i)
    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, headers=headers) as client:

        async def worker():
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                name, data = clips[i % len(clips)]
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files={"file": (name, data, "audio/wav")})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(n_clients)))
        wall = time.perf_counter() - t0
    return np.array(latencies), errors, wall


def train_model(out: Path) -> Path:
    data = Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "emodb"
    if not data.exists():
        sys.exit(f"no --model given and {data} does not exist; pass --model DIR or set SERKIT_DATA")
    print(f"training egemaps-svm on {data} …", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "serkit.cli",
            "train",
            "--corpus",
            f"emodb:{data}",
            "--recipe",
            "egemaps-svm",
            "--out",
            str(out),
            "-q",
        ],
        check=True,
    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: train egemaps-svm on EmoDB)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=320, help="requests per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the first is warm-up for the memory check")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--max-rss-growth-mb", type=float, default=50.0, help="allowed RSS growth after warm-up")
    ap.add_argument("--clips", type=int, default=8, help="distinct EmoDB clips to cycle through")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="serkit-load-")
    model = Path(args.model) if args.model else train_model(Path(tmp.name) / "model")
    data = (
        Path(os.environ.get("SERKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "emodb" / "wav"
    )
    files = sorted(data.glob("*.wav"))[: args.clips]
    if not files:
        sys.exit(f"no clips under {data}; set SERKIT_DATA")
    clips = [(f.name, f.read_bytes()) for f in files]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SERKIT_MAX_PENDING": str(max(64, 2 * args.clients))}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serkit.cli",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "-q",
        ],
        env=env,
    )
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                httpx.get(url + "/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    sys.exit("the server did not start")
                time.sleep(0.2)
        api_key = (os.environ.get("SERKIT_API_KEYS") or "").split(",")[0].strip() or None
        rss = [rss_mb(server.pid)]
        rows = []
        all_errors = []
        for r in range(args.rounds):
            lat, errors, wall = asyncio.run(run_round(url, clips, args.requests, args.clients, api_key))
            rss.append(rss_mb(server.pid))
            all_errors += errors
            p50, p95, p99 = np.percentile(lat, [50, 95, 99]) * 1000
            rows.append((r + 1, len(lat), len(errors), len(lat) / wall, p50, p95, p99, lat.max() * 1000, rss[-1]))
        print(
            f"serkit serve load test: {args.clients} clients, {args.requests} requests x {args.rounds} rounds, "
            f"POST /v1/predict with {len(clips)} EmoDB clips, {args.workers} worker(s), {os.cpu_count()} CPUs"
        )
        print(
            f"{'round':>5} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'RSS MB':>7}"
        )
        for row in rows:
            print(
                f"{row[0]:>5} {row[1]:>8} {row[2]:>6} {row[3]:>7.1f} {row[4]:>7.0f} {row[5]:>7.0f} {row[6]:>7.0f} "
                f"{row[7]:>7.0f} {row[8]:>7.0f}"
            )
        growth = max(rss[2:] or rss[1:]) - rss[1] if len(rss) > 2 else 0.0
        print(
            f"RSS: {rss[0]:.0f} MB idle, {rss[1]:.0f} MB after warm-up, growth after warm-up {growth:+.0f} MB "
            f"(allowed {args.max_rss_growth_mb:g})"
        )
        metrics = httpx.get(url + "/metrics", timeout=5).text
        served = sum(
            float(l.rsplit(" ", 1)[1])
            for l in metrics.splitlines()
            if l.startswith('serkit_http_requests_total{method="POST",route="/v1/predict",status="200"}')
        )
        print(f"/metrics: {served:.0f} successful predictions counted")
        for e in all_errors[:10]:
            print(f"error: {e}", file=sys.stderr)
        ok = not all_errors and growth <= args.max_rss_growth_mb
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())

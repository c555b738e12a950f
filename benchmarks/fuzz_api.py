"""Bounded schemathesis fuzzing of the HTTP service: zero server errors, zero schema mismatches.

Starts the service in this process (uvicorn on a free loopback port, with the same connection
limits as ``serkit serve``), points schemathesis at its ``/openapi.json`` and runs the checks

- ``not_a_server_error``: no 5xx for any generated request;
- ``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance``,
  ``response_schema_conformance``: every answer is one the OpenAPI description documents (the
  issue-13 finding ST108 — a 422 ``detail`` list where the schema says string — is one of these);
- ``unsupported_method``, ``missing_required_header``, ``ignored_auth`` (with ``--api-key``).

The run is bounded by ``--max-examples`` per operation and ``--max-time`` seconds in all.

    python benchmarks/fuzz_api.py --model models/emodb --max-examples 50 --max-time 300
    python benchmarks/fuzz_api.py                       # the shipped default model, 20 examples, 120 s

Exits with schemathesis's status: 0 when every check passed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "missing_required_header",
)


class _Server:
    def __init__(self, app, settings):
        import uvicorn

        from serkit.serve.server import uvicorn_config

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_config(settings))
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def fuzz(
    model=None,
    *,
    max_examples: int = 20,
    max_time: float = 120.0,
    seed: int = 1,
    api_key: str | None = None,
    workdir: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run schemathesis against a service for ``model``; returns the finished schemathesis process."""
    from serkit.inference import Recognizer
    from serkit.serve.app import create_app
    from serkit.serve.settings import Settings

    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        raise SystemExit("schemathesis is not installed (pip install 'serkit[dev]')")
    settings = Settings(api_keys=(api_key,) if api_key else ())
    checks = CHECKS + (("ignored_auth",) if api_key else ())
    with _Server(create_app(Recognizer.load(model), settings), settings) as server:
        command = [
            str(cli),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            ",".join(checks),
            "--max-examples",
            str(max_examples),
            "--max-time",
            str(int(max_time)),
            "--seed",
            str(seed),
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
        ]
        if api_key:
            command += ["--header", f"X-API-Key: {api_key}"]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=max_time + 120,
            cwd=workdir,
            env={**os.environ, "NO_COLOR": "1"},
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    ap.add_argument("--max-examples", type=int, default=20, help="examples per operation (default 20)")
    ap.add_argument("--max-time", type=float, default=120.0, help="time budget of the whole run, seconds (default 120)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--api-key", default=None, help="run with SERKIT_API_KEYS=KEY and check that auth is enforced")
    args = ap.parse_args(argv)
    t0 = time.time()
    proc = fuzz(
        args.model, max_examples=args.max_examples, max_time=args.max_time, seed=args.seed, api_key=args.api_key
    )
    print(proc.stdout[-6000:])
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
    print(f"schemathesis exit code {proc.returncode} after {time.time() - t0:.0f} s")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

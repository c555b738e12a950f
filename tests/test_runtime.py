"""Worker processes die with their parent: SIGTERM / SIGKILL of `serkit train` and SIGTERM of `serkit serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serkit import runtime

ROOT = Path(__file__).resolve().parents[1]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for kid in children.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout: float, step: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def _env(tmp_path: Path, **extra) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "SERKIT_CACHE": str(tmp_path / "cache"),
        "SERKIT_JOBS": "2",
        **extra,
    }


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_train_leaves_no_worker_behind(tmp_path, emodb_dir, sig):
    # an empty cache: extraction runs in two worker processes for a while
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serkit.cli",
            "train",
            "--corpus",
            f"emodb:{emodb_dir}",
            "--recipe",
            "librosa-svm",
            "--out",
            str(tmp_path / "model"),
        ],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        workers = _wait_for(lambda: len(_descendants(proc.pid)) >= 2 and _descendants(proc.pid), 120)
        assert workers and len(workers) >= 2, "the workers never started"
        time.sleep(1.0)
        workers = _descendants(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
        left = _wait_for(lambda: not any(_running(p) for p in workers), 10)
        assert left, f"still running 10 s after {sig.name}: {[p for p in workers if _running(p)]}"
        # nobody holds the caller's pipe any more: reading it ends
        proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _descendants(proc.pid):
            os.kill(p, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_sigterm_after_a_long_upload_leaves_nothing(tmp_path):
    pytest.importorskip("fastapi")
    import httpx
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(40 * 16000) / 16000
    clip = (
        0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.normal(size=t.size)
    ).astype(np.float32)
    sf.write(tmp_path / "long.wav", clip, 16000)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit.cli", "serve", "--port", str(port), "--quiet"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up():
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert _wait_for(up, 180, 0.5), proc.stderr.read1().decode() if proc.poll() is not None else "no health"
        with open(tmp_path / "long.wav", "rb") as fh:
            r = httpx.post(
                f"{url}/v1/timeline?window=2&hop=1", files={"file": ("long.wav", fh, "audio/wav")}, timeout=300
            )
        assert r.status_code == 200, r.text
        assert len(r.json()["windows"]) == 39
        children = _descendants(proc.pid)
        assert len(children) >= 2  # the feature workers (and a fork server) are up
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert _wait_for(lambda: not any(_running(p) for p in children), 10), (
            f"left behind: {[p for p in children if _running(p)]}"
        )
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in _descendants(proc.pid):
            os.kill(p, signal.SIGKILL)


def test_worker_exits_when_its_owner_is_gone():
    """The watchdog alone (no parent-death signal: the owner is not the parent) ends a worker."""
    code = (
        f"import os, sys, time; sys.path.insert(0, {str(ROOT / 'src')!r}); from serkit import runtime; "
        "runtime.WATCHDOG_INTERVAL_S = 0.1; runtime.worker_init(int(sys.argv[1])); time.sleep(30)"
    )
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    worker = subprocess.Popen([sys.executable, "-c", code, str(owner.pid)])
    try:
        time.sleep(1.0)
        assert worker.poll() is None
        owner.kill()
        owner.wait()
        assert worker.wait(timeout=10) == 1
    finally:
        for p in (owner, worker):
            if p.poll() is None:
                p.kill()


def test_thread_and_job_counts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SERKIT_THREADS", "3")
    monkeypatch.setenv("SERKIT_JOBS", "5")
    assert runtime.default_threads() == 3 and runtime.default_jobs() == 5
    monkeypatch.setenv("SERKIT_JOBS", "many")
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\$SERKIT_JOBS='many' is not a whole number"):
        runtime.default_jobs()
    monkeypatch.delenv("SERKIT_JOBS")
    assert runtime.default_jobs() == runtime.cpu_count()


def test_a_killed_shared_pool_is_replaced_on_next_use():
    """kill_pools (a service shutting down) must not leave a dead pool for the next prediction."""
    from serkit.features.base import _shared_pool, _worker_context, shutdown_pool

    if _worker_context() is None:
        pytest.skip("worker processes cannot start here")
    first = _shared_pool(2)
    assert first.submit(int, "7").result(timeout=60) == 7
    runtime.kill_pools()
    assert runtime.stopping()
    second = _shared_pool(2)
    try:
        assert second is not first and second.submit(int, "8").result(timeout=60) == 8
        assert not runtime.stopping()
    finally:
        shutdown_pool()


def test_io_threads_are_the_cores_plus_two_at_most_eight(monkeypatch):
    """One policy for audio-decoding threads (predict_batch, corpus audio checks)."""
    from serkit import runtime

    for cores, threads in ((1, 3), (2, 4), (6, 8), (32, 8)):
        monkeypatch.setattr(runtime, "cpu_count", lambda cores=cores: cores)
        assert runtime.io_threads() == threads


def _extract_in_worker(paths):
    import torch  # noqa: F401  (with torch loaded, extraction workers would come from a fork server)

    from serkit.features import extract, get_extractor

    return extract(get_extractor("librosa"), paths, cache=False, n_jobs=2, progress=False)


def test_extraction_inside_joblib_workers_stays_in_their_process(emodb_dir):
    """A loky worker (joblib.Parallel, as benchmarks/onesided.py --jobs 2 uses) has its own start
    method, and a fork server started from it cannot prepare its children: extraction there runs in
    the worker itself, with the same features as in this process."""
    from joblib import Parallel, delayed

    from serkit.features import extract, get_extractor

    paths = [str(p) for p in sorted((emodb_dir / "wav").glob("03a0*.wav"))[:10]]
    assert len(paths) == 10
    got = Parallel(n_jobs=2)(delayed(_extract_in_worker)(paths) for _ in range(2))
    here = extract(get_extractor("librosa"), paths, cache=False, n_jobs=1, progress=False)
    for rows in got:
        np.testing.assert_allclose(rows, here, rtol=1e-5, atol=1e-6)

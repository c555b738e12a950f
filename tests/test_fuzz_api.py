"""schemathesis against the running service, with a short budget: no 5xx, no answer the schema does not describe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs pip install 'serkit[serve]'")
pytest.importorskip("uvicorn", reason="the service needs pip install 'serkit[serve]'")
pytest.importorskip("multipart", reason="the service needs pip install 'serkit[serve]'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fuzz_api  # noqa: E402


def _skip_without_schemathesis():
    if not Path(sys.executable).with_name("schemathesis").exists():
        pytest.skip("schemathesis is not installed (pip install 'serkit[dev]')")


def test_fuzzing_finds_no_server_error_and_no_schema_mismatch(small_model_dir, tmp_path):
    _skip_without_schemathesis()
    proc = fuzz_api.fuzz(small_model_dir, max_examples=8, max_time=60, seed=1, workdir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("api_key", [None, "fuzz-key"])
def test_longer_fuzzing_run(small_model_dir, tmp_path, api_key):
    _skip_without_schemathesis()
    proc = fuzz_api.fuzz(small_model_dir, max_examples=100, max_time=600, seed=2, api_key=api_key, workdir=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]

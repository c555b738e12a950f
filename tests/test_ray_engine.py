"""``serkit predict --engine ray`` on a local Ray (2 CPUs): the local engine's rows, exactly once after a SIGKILL.

One job does the heavy lifting for the module: a driver subprocess predicts 10 EmoDB files and a
broken one with the shipped default model, is SIGKILLed after its first shard, and the job is
resumed in this process; the tests then check that job's shards against the local engine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from serkit.errors import ConfigError

ray = pytest.importorskip("ray")

from serkit.engines.ray_engine import JOB_FILE, predict, read_shards, require_ray
from tests.conftest import data_dir

N_FILES = 10


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "serkit.cli", "predict", "--engine", "ray", *args]


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def job(ray_local, tmp_path_factory):
    """The killed-and-resumed job: its listing, inputs, output folder, rows at the kill and the resume's summary."""
    wav = sorted((data_dir("emodb") / "wav").glob("*.wav"))[::50][:N_FILES]
    root = tmp_path_factory.mktemp("ray")
    broken = root / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVE not really")
    inputs = [str(f) for f in wav] + [str(broken)]
    listing = root / "listing.txt"
    listing.write_text("# files to score\n" + "\n".join(inputs) + "\n")
    out = root / "shards"
    driver = subprocess.Popen(
        _cli("--address", ray_local, "--workers", "1", "--shard-rows", "1", "-q", str(listing), "--out", f"{out}/"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")):
        if driver.poll() is not None:
            pytest.fail(
                f"the driver exited ({driver.returncode}) before writing a shard: {driver.stderr.read().decode()}"
            )
        if time.monotonic() > deadline:
            driver.kill()
            pytest.fail("no shard within 240 s")
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    at_kill = len(read_shards(out))
    summary = predict([str(listing)], out, workers=1, resume=True)
    return {"inputs": inputs, "listing": listing, "out": out, "at_kill": at_kill, "summary": summary}


def test_resume_after_sigkill_gives_every_file_exactly_once(job):
    table = read_shards(job["out"])
    assert 0 < job["at_kill"] < len(job["inputs"])  # killed mid-run
    assert len(table) == len(job["inputs"])  # no duplicate ...
    assert sorted(table["file"]) == sorted(job["inputs"])  # ... and none missing
    s = job["summary"]
    assert (s["files"], s["skipped"], s["predicted"], s["complete"]) == (
        len(job["inputs"]),
        job["at_kill"],
        len(job["inputs"]) - job["at_kill"],
        True,
    )
    assert s["errors"] == 1  # the broken file, whichever run predicted it


def test_same_rows_as_the_local_engine(job, monkeypatch):
    from serkit.inference import Recognizer

    monkeypatch.setenv("SERKIT_JOBS", "1")  # in-process extraction: faster here than starting a pool for 11 files

    local = Recognizer.load(None).predict_batch(job["inputs"]).sort_values("file").reset_index(drop=True)
    ours = read_shards(job["out"]).sort_values("file").reset_index(drop=True)
    assert list(ours.columns) == list(local.columns)
    assert list(ours["file"]) == list(local["file"])
    assert list(ours["label"]) == list(local["label"])
    assert list(ours["error"]) == list(local["error"])
    numbers = [c for c in local.columns if c.startswith("p_")] + ["start", "end"]
    np.testing.assert_allclose(ours[numbers].to_numpy(float), local[numbers].to_numpy(float), atol=1e-6, rtol=0)
    assert (ours["label"] != "").sum() == N_FILES  # real predictions, not all error rows


def test_broken_file_is_an_error_row(job):
    table = read_shards(job["out"])
    row = table[table["file"].str.endswith("broken.wav")].iloc[0]
    assert row["label"] == ""
    assert "cannot decode" in row["error"]
    assert np.isnan(row[[c for c in table.columns if c.startswith("p_")]].to_numpy(float)).all()
    assert (table["error"] == "").sum() == N_FILES


def test_folder_of_another_job_is_refused(job, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(job["inputs"][0] + "\n")
    with pytest.raises(ConfigError, match="another job.*another folder"):
        predict([str(other)], job["out"], resume=True)
    with pytest.raises(ConfigError, match="already holds .* shards.*--resume"):
        predict([str(job["listing"])], job["out"])
    assert (job["out"] / JOB_FILE).exists()


def test_a_second_driver_on_the_same_folder_is_refused(ray_local, tmp_path):
    import fcntl

    wav = sorted((data_dir("emodb") / "wav").glob("*.wav"))[0]
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # what a running driver holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another serkit driver is writing"):
            predict([str(wav)], out)
    assert not (out / JOB_FILE).exists()


def test_no_ray_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'serkit\[ray\]'"):
        require_ray()


def test_unreachable_address_is_named(tmp_path):
    wav = sorted((data_dir("emodb") / "wav").glob("*.wav"))[0]
    res = subprocess.run(
        _cli("--address", "127.0.0.1:9", str(wav), "--out", f"{tmp_path}/out/"), capture_output=True, text=True
    )
    assert res.returncode == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()  # nothing claimed before Ray answered


def test_local_only_options_are_refused(tmp_path):
    from serkit.cli import main

    assert main(["predict", "--engine", "ray", "--timeline", "x.wav", "--out", f"{tmp_path}/o/"]) == 2
    assert main(["predict", "--engine", "ray", "x.wav", "--out", f"{tmp_path}/o.csv"]) == 2
    assert main(["predict", "--resume", "x.wav"]) == 2


def test_feature_cache_extracted_on_ray_is_reused_by_a_local_run(ray_local, tmp_path, monkeypatch):
    import serkit.features.base as fb
    from serkit.engines.ray_engine import ray_extraction
    from serkit.features import extract, get_extractor

    monkeypatch.setenv("SERKIT_CACHE", str(tmp_path / "cache"))
    wav = [str(f) for f in sorted((data_dir("emodb") / "wav").glob("*.wav"))[::40][:12]]
    e = get_extractor("librosa", n_formants=0)
    here = extract(e, wav, cache=False, n_jobs=1, progress=False)
    with ray_extraction():
        on_ray = extract(e, wav, progress=False)  # Ray tasks; the cache written by this process
    np.testing.assert_array_equal(on_ray, here)

    def no_extraction(*_):
        raise AssertionError("a cached clip was extracted again")

    monkeypatch.setattr(fb, "_extract_one", no_extraction)
    np.testing.assert_array_equal(extract(e, wav, n_jobs=1, progress=False), here)  # every clip from the cache


def _actor_pids(name: str) -> list[int]:
    """Processes whose title Ray set to ``ray::<name>...`` (an actor's worker process)."""
    from pathlib import Path

    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_an_actor_killed_mid_run_is_replaced_and_its_batch_retried(job, ray_local, tmp_path):
    import os

    out = tmp_path / "shards"
    driver = subprocess.Popen(
        _cli(
            "--address", ray_local, "--workers", "1", "--shard-rows", "1", "-q", str(job["listing"]), "--out", f"{out}/"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    pids = _actor_pids("MapWorker(MapBatches(_Predictor))")
    assert pids, "no model actor found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert driver.wait(timeout=300) == 0, driver.stderr.read().decode()
    table = read_shards(out)
    assert sorted(table["file"]) == sorted(job["inputs"])  # every file once, none lost with the actor

"""`serkit stream`: windows from a file, stdin (raw PCM and WAV) and clean stops on signals or closed stdin."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from serkit.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.quick_models import quick_soundnet

    return quick_soundnet(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """About 12 s of EmoDB speech at 16 kHz (as a WAV file) and its samples."""
    from tests.conftest import data_dir

    clips = sorted((data_dir("emodb") / "wav").glob("08a0*.wav"))[:6]
    x = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
    sr = sf.info(clips[0]).samplerate
    path = tmp_path_factory.mktemp("stream") / "speech.wav"
    sf.write(path, x, sr)
    return path, x, sr


def test_file_at_speed_0_gives_one_line_per_hop(model_dir, speech, capsys):
    path, x, sr = speech
    code = main(
        [
            "stream",
            "--model",
            str(model_dir),
            "--file",
            str(path),
            "--speed",
            "0",
            "--window",
            "2",
            "--hop",
            "0.5",
            "--format",
            "jsonl",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    duration = len(x) / sr
    n_regular = int((duration - 2.0) / 0.5 + 1e-9) + 1
    tail = duration - (2.0 + 0.5 * (n_regular - 1)) > 1e-9  # the window engine's tail rule: any uncovered audio
    assert len(rows) == n_regular + tail
    starts = [r["start"] for r in rows]
    assert np.all(np.diff(starts) > 0)
    assert np.allclose(np.diff(starts[:n_regular]), 0.5)
    assert all(r["end"] - r["start"] == pytest.approx(2.0, abs=1e-3) for r in rows)
    assert all(r["error"] == "" and r["label"] for r in rows)
    summary = json.loads(captured.err.strip().splitlines()[-1])["summary"]
    assert summary["windows"] == len(rows) and summary["dropped"] == 0
    assert summary["latency_ms_median"] > 0 and summary["stopped_by"] == "end of input"


def test_smoothing_and_drops_are_counted(model_dir, speech):
    from serkit.inference import Recognizer
    from serkit.stream_cli import run_stream

    rec = Recognizer.load(model_dir)
    out, err = io.StringIO(), io.StringIO()
    stats, code = run_stream(
        rec,
        source="file",
        path=speech[0],
        speed=0,
        window=1.0,
        hop=0.05,
        queue_size=1,
        when_busy="drop",
        fmt="jsonl",
        out=out,
        err=err,
    )
    assert code == 0 and stats.dropped > 0  # capture at full speed outruns inference: drops, never silent
    assert stats.windows == stats.classified + stats.silent + stats.dropped
    assert json.loads(err.getvalue())["summary"]["dropped"] == stats.dropped
    raw_out = io.StringIO()
    run_stream(
        rec, source="file", path=speech[0], speed=0, window=2, hop=1, fmt="jsonl", out=raw_out, err=io.StringIO()
    )
    raw = [json.loads(l) for l in raw_out.getvalue().splitlines()]
    smooth_out = io.StringIO()
    run_stream(
        rec,
        source="file",
        path=speech[0],
        speed=0,
        window=2,
        hop=1,
        ema=0.3,
        fmt="jsonl",
        out=smooth_out,
        err=io.StringIO(),
    )
    smooth = [json.loads(l) for l in smooth_out.getvalue().splitlines()]
    col = [c for c in raw[0] if c.startswith("p_")][0]
    # an EMA with weight 0.3 on the newest window varies less from window to window
    assert np.std(np.diff([r[col] for r in smooth])) < np.std(np.diff([r[col] for r in raw]))
    assert smooth[0][col] == pytest.approx(raw[0][col], abs=1e-4)


def test_stdin_wav_stream(model_dir, speech):
    from serkit.inference import Recognizer
    from serkit.stream_cli import run_stream

    path, x, sr = speech
    buf = io.BytesIO()
    sf.write(buf, x[: 5 * sr], sr, format="WAV", subtype="PCM_16")
    out = io.StringIO()
    stats, code = run_stream(
        Recognizer.load(model_dir),
        source="stdin",
        stdin=io.BytesIO(buf.getvalue()),
        window=2,
        hop=1,
        fmt="jsonl",
        out=out,
        err=io.StringIO(),
    )
    assert code == 0 and [json.loads(l)["start"] for l in out.getvalue().splitlines()] == [0.0, 1.0, 2.0, 3.0]


def test_raw_stdin_needs_a_rate(model_dir):
    from serkit.errors import ConfigError
    from serkit.inference import Recognizer
    from serkit.stream_cli import run_stream

    with pytest.raises(ConfigError, match="--rate"):
        run_stream(Recognizer.load(model_dir), source="stdin", stdin=io.BytesIO(b"\x00" * 100))


def test_microphone_without_sounddevice_is_a_clear_error(model_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if it were not installed
    assert main(["stream", "--model", str(model_dir), "--mic"]) == 2
    assert "pip install sounddevice" in capsys.readouterr().err


def _start(model_dir, *args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "serkit.cli",
            "stream",
            "--model",
            str(model_dir),
            "--stdin",
            "--rate",
            "16000",
            "--window",
            "1",
            "--hop",
            "0.5",
            "--format",
            "jsonl",
            *args,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _pcm(x: np.ndarray, sr: int) -> bytes:
    from serkit.audio import resample

    return (np.clip(resample(x, sr, 16000), -1, 1) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_signal_midway_exits_cleanly_with_summary(model_dir, speech, sig, code, name):
    _, x, sr = speech
    proc = _start(model_dir)
    pcm = _pcm(x, sr)
    proc.stdin.write(pcm[: 16000 * 2 * 4])  # 4 s of audio, stdin left open: the stream is "live"
    proc.stdin.flush()
    first = proc.stdout.readline()  # a window came out: the stream is running
    assert json.loads(first)["start"] == 0.0
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err.decode()
    summary = json.loads(err.decode().strip().splitlines()[-1])["summary"]
    assert summary["stopped_by"] == name and summary["windows"] >= 1
    assert "Traceback" not in err.decode()


def test_closed_stdin_exits_0_with_summary(model_dir, speech):
    _, x, sr = speech
    proc = _start(model_dir)
    out, err = proc.communicate(_pcm(x[: 3 * sr], sr), timeout=60)
    assert proc.returncode == 0, err.decode()
    rows = [json.loads(l) for l in out.decode().splitlines()]
    assert [r["start"] for r in rows] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert json.loads(err.decode().strip().splitlines()[-1])["summary"]["stopped_by"] == "end of input"

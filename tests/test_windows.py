"""The one window engine: grid, tail rule, silence gate, smoothing, work bounds — and one answer from
`serkit stream` and the WebSocket on the same audio."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from serkit.windows import (
    Cutter,
    Grid,
    Scorer,
    StreamLimitError,
    StreamLimits,
    Window,
    cut,
    is_silent,
    spans,
)


# -- the grid and the tail rule ------------------------------------------------------------------------
def test_spans_known_answers():
    # 5.3 s, 2 s every 1 s: four whole windows and one end-aligned tail (the 0.3 s left over is covered)
    assert list(spans(5.3, window=2.0, hop=1.0)) == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (3.3, 5.3)]
    # no tail when the windows end exactly at the end
    assert list(spans(5.0, window=2.0, hop=1.0)) == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0)]
    assert list(spans(10.0, window=4.0, hop=2.0)) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    # shorter than one window: one window over all of it
    assert list(spans(2.5, window=4.0, hop=2.0)) == [(0.0, 2.5)]
    # a one-sample tail still gets its window (every sample is in a window)
    one_more = list(spans(4.0 + 1 / 16000, window=4.0, hop=4.0, sampling_rate=16000))
    assert one_more == [(0.0, 4.0), (0.000063, 4.000063)]  # times to the microsecond
    # lazily: a day of audio costs nothing until iterated
    it = spans(86400.0, window=4.0, hop=2.0, sampling_rate=48000)
    assert next(it) == (0.0, 4.0)


def test_cut_matches_grid_samples():
    x = np.arange(16000 * 9, dtype=np.float32)
    pieces = cut(x, 16000, window=4.0, hop=4.0)
    assert [(w.start, w.end) for w in pieces] == [(0.0, 4.0), (4.0, 8.0), (5.0, 9.0)]
    assert all(len(w.samples) == 64000 for w in pieces)
    assert pieces[2].samples[0] == 5 * 16000  # the tail starts at n - window


def test_grid_never_drifts():
    g = Grid(22050, 1.0, 1 / 3)  # 7350 samples per hop exactly
    n = 22050 * 3600  # an hour: window k starts at k * 7350, the last one ends exactly at the end
    got = list(g.spans(n))
    assert len(got) == 3 * 3600 - 2 and got[-1] == (n - 22050, n) and got[1000] == (7350000, 7372050)


@pytest.mark.parametrize("sizes", [[84800], [160] * 600, [7777] * 11, [1, 2, 3, 50000, 34794]])
def test_cutter_equals_cut_whatever_the_chunks(sizes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(84800).astype(np.float32)  # 5.3 s at 16 kHz
    c = Cutter(16000, 2.0, 1.0, limits=StreamLimits(max_windows_per_s=None))
    got, at = [], 0
    for n in sizes:
        got += c.feed(x[at : at + n])
        at += n
        assert c._buffer.size <= 32000 + max(sizes)  # one window plus one chunk
    got += c.flush()
    want = cut(x, 16000, window=2.0, hop=1.0)
    assert (
        [(w.start, w.end) for w in got]
        == [(w.start, w.end) for w in want]
        == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (3.3, 5.3)]
    )
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_flush_of_a_short_stream_and_min_samples():
    c = Cutter(16000, 2.0, 1.0)
    assert c.feed(np.ones(8000, np.float32)) == []
    tail = c.flush(min_samples=1600)
    assert [(w.start, w.end) for w in tail] == [(0.0, 0.5)] and c.seen == 0
    c.feed(np.ones(800, np.float32))
    assert c.flush(min_samples=1600) == []  # 50 ms: too short to classify


def test_silence_gate_at_minus_60_dbfs():
    assert is_silent(np.full(1600, 10 ** (-61 / 20), np.float32))
    assert not is_silent(np.full(1600, 10 ** (-59 / 20), np.float32))
    assert is_silent(np.zeros(0, np.float32))


# -- scoring: silence rows and smoothing ---------------------------------------------------------------
class _Fixed:
    """A stand-in recognizer whose classifier returns the next rows of ``answers``."""

    labels = ["a", "b"]
    sampling_rate = 16000
    min_duration = 0.1

    def __init__(self, answers):
        self.answers = list(answers)
        self.classifier = self

    def predict_proba(self, signals, speakers=None):
        out, self.answers = self.answers[: len(signals)], self.answers[len(signals) :]
        return np.array(out, dtype=np.float32)


def test_scorer_silence_and_ema_known_answer():
    loud, quiet = np.full(1600, 0.1, np.float32), np.zeros(1600, np.float32)
    s = Scorer(_Fixed([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), 16000, ema=0.5)
    rows = s.rows([Window(0.0, 0.1, loud), Window(0.1, 0.2, quiet), Window(0.2, 0.3, loud), Window(0.3, 0.4, loud)])
    assert [r["error"] for r in rows] == ["", "silence", "", ""]
    assert rows[1]["label"] == "" and np.isnan(rows[1]["p_a"])
    # EMA over classified windows only: 1 -> 0.5 -> 0.25
    assert [r["p_a"] for r in rows if not r["error"]] == [1.0, 0.5, 0.25]
    assert [r["label"] for r in rows] == ["a", "", "a", "b"]


# -- work bounds ---------------------------------------------------------------------------------------
def test_limits_ratio_message_and_rate():
    with pytest.raises(StreamLimitError, match="SERKIT_STREAM_MAX_OVERLAP") as e:
        Cutter(4000, 60.0, 0.25)  # the audit's request: every sample in 240 windows
    assert e.value.setting == "SERKIT_STREAM_MAX_OVERLAP"
    c = Cutter(4000, 2.0, 0.25, limits=StreamLimits(max_windows_per_message=8, max_windows_per_s=None))
    with pytest.raises(StreamLimitError, match="SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE") as e:
        c.feed(np.zeros(4000 * 4, np.float32))  # 9 windows in one chunk
    assert e.value.too_big and c.seen == 0  # refused before any work, nothing kept
    now = [0.0]
    c = Cutter(
        4000, 1.0, 0.25, limits=StreamLimits(max_windows_per_message=4, max_windows_per_s=2.0), clock=lambda: now[0]
    )
    assert len(c.feed(np.zeros(4000, np.float32))) == 1  # burst of 4: 3 left
    assert len(c.feed(np.zeros(3000, np.float32))) == 3  # 0 left
    with pytest.raises(StreamLimitError, match="SERKIT_STREAM_MAX_WINDOWS_PER_S"):
        c.feed(np.zeros(1000, np.float32))
    now[0] = 2.0  # two seconds later: 4 windows' worth again
    assert len(c.feed(np.zeros(4000, np.float32))) == 4


def test_limits_from_env():
    lim = StreamLimits.from_env({"SERKIT_STREAM_MAX_OVERLAP": "4", "SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE": "10"})
    assert lim == StreamLimits(max_overlap=4.0, max_windows_per_message=10, max_windows_per_s=20.0)
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match="SERKIT_STREAM_MAX_WINDOWS_PER_S"):
        StreamLimits.from_env({"SERKIT_STREAM_MAX_WINDOWS_PER_S": "fast"})


# -- one answer: `serkit stream` and the WebSocket -----------------------------------------------------
@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from serkit.inference import Recognizer
    from tests.quick_models import quick_soundnet

    return Recognizer.load(quick_soundnet(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def speech_5_3(tmp_path_factory):
    """5.3 s of EmoDB speech at 16 kHz, saved as float WAV (so both paths see the same samples)."""
    from tests.conftest import data_dir

    clips = sorted((data_dir("emodb") / "wav").glob("08a0*.wav"))[:4]
    x = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])[: int(5.3 * 16000)]
    assert len(x) == 84800
    path = tmp_path_factory.mktemp("w") / "speech.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    return path, x


def _ws(app_client, x, query, chunk):
    with app_client.websocket_connect(f"/v1/stream?{query}") as ws:
        assert ws.receive_json()["type"] == "ready"
        pcm = x.astype("<f4").tobytes()
        for i in range(0, len(pcm), chunk):
            ws.send_bytes(pcm[i : i + chunk])
        ws.send_text(json.dumps({"type": "end"}))
        msgs = []
        while True:
            m = ws.receive_json()
            if m["type"] == "end":
                return msgs
            msgs.append(m)


@pytest.mark.parametrize("ema", [1.0, 0.4])
def test_cli_stream_and_websocket_give_identical_rows(rec, speech_5_3, ema, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from serkit.serve.app import Settings, create_app
    from serkit.stream_cli import run_stream

    path, x = speech_5_3
    out = io.StringIO()
    run_stream(
        rec, source="file", path=path, speed=0, window=2.0, hop=1.0, ema=ema, fmt="jsonl", out=out, err=io.StringIO()
    )
    cli = [json.loads(line) for line in out.getvalue().splitlines()]
    with TestClient(create_app(rec, Settings())) as client:
        ws = _ws(client, x, f"rate=16000&format=f32&window=2&hop=1&ema={ema}", chunk=4 * 5923)  # odd chunks
    assert len(cli) == len(ws) == 5
    assert [(r["start"], r["end"]) for r in cli] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (3.0, 5.0), (3.3, 5.3)]
    for c, w in zip(cli, ws):
        assert (c["start"], c["end"], c["label"], c["error"]) == (w["start"], w["end"], w["label"], w.get("error", ""))
        assert {l: c[f"p_{l}"] for l in rec.labels} == w["probabilities"]  # identical, not close


# -- the WebSocket over its limits ---------------------------------------------------------------------
def _closed(client, query, payload=None):
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect(f"/v1/stream?{query}") as ws:
        m = ws.receive_json()
        if payload is not None:
            assert m["type"] == "ready"
            for p in payload:
                ws.send_bytes(p)
            m = ws.receive_json()
            while m["type"] == "window":
                m = ws.receive_json()
        assert m["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
    return m["message"], e.value.code, e.value.reason


def test_websocket_over_limit_requests_are_closed_with_the_setting(rec):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from serkit.serve.app import Settings, create_app

    with TestClient(create_app(rec, Settings())) as client:
        # the audit's request: 60 s windows every 0.25 s at 4 kHz
        msg, code, reason = _closed(client, "rate=4000&format=s16&window=60&hop=0.25")
        assert code == 1008 and "SERKIT_STREAM_MAX_OVERLAP" in msg and "SERKIT_STREAM_MAX_OVERLAP" in reason
    settings = Settings(stream_max_windows_per_message=8, stream_max_windows_per_s=1000)
    with TestClient(create_app(rec, settings)) as client:
        big = np.zeros(4000 * 4, "<i2").tobytes()  # 4 s at hop 0.25: 9 windows in one message
        msg, code, reason = _closed(client, "rate=4000&format=s16&window=2&hop=0.25", [big])
        assert code == 1009 and "SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE" in reason
    settings = Settings(stream_max_windows_per_message=4, stream_max_windows_per_s=0.5)
    with TestClient(create_app(rec, settings)) as client:
        second = (0.1 * np.ones(4000)).astype("<f4").tobytes()
        msg, code, reason = _closed(client, "rate=4000&format=f32&window=1&hop=0.25", [second] * 4)
        assert code == 1008 and "SERKIT_STREAM_MAX_WINDOWS_PER_S" in reason


def test_cli_stream_is_bounded_by_the_same_limits(rec, speech_5_3, capsys, monkeypatch):
    from serkit.cli import main
    from tests.quick_models import _BUILT

    path, _ = speech_5_3
    args = ["stream", "--model", str(_BUILT["soundnet"]), "--file", str(path), "--speed", "0"]
    assert main([*args, "--window", "60", "--hop", "0.25"]) == 2
    assert "SERKIT_STREAM_MAX_OVERLAP" in capsys.readouterr().err
    monkeypatch.setenv("SERKIT_STREAM_MAX_OVERLAP", "1.5")
    assert main([*args, "--window", "2", "--hop", "1"]) == 2
    assert "the limit is 1.5 (SERKIT_STREAM_MAX_OVERLAP)" in capsys.readouterr().err


def test_the_service_reads_the_stream_limits_with_the_engines_rule():
    """One reader of SERKIT_STREAM_*: the CLI stream (StreamLimits) and the service (Settings) agree."""
    from serkit.errors import ConfigError
    from serkit.serve.settings import Settings

    env = {"SERKIT_STREAM_MAX_OVERLAP": "4", "SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE": "10"}
    s, lim = Settings.from_env(env), StreamLimits.from_env(env)
    assert (s.stream_max_overlap, s.stream_max_windows_per_message, s.stream_max_windows_per_s) == (4.0, 10, 20.0)
    assert lim == StreamLimits(max_overlap=4.0, max_windows_per_message=10, max_windows_per_s=20.0)
    for bad in ({"SERKIT_STREAM_MAX_OVERLAP": "0.5"}, {"SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE": "2.5"}):
        for read in (Settings.from_env, StreamLimits.from_env):
            with pytest.raises(ConfigError, match=next(iter(bad))):
                read(bad)

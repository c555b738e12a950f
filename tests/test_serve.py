"""The HTTP service: every endpoint, every bad input, limits, auth, streaming, concurrency, fuzzing.

All traffic stays on 127.0.0.1. A small egemaps-svm model is trained on 36 EmoDB clips.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi", reason="the service needs pip install 'serkit[serve]'")
pytest.importorskip("uvicorn", reason="the service needs pip install 'serkit[serve]'")
pytest.importorskip("multipart", reason="the service needs pip install 'serkit[serve]'")

import soundfile as sf  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from serkit.cli import main  # noqa: E402
from serkit.errors import AudioError  # noqa: E402
from serkit.inference import Recognizer  # noqa: E402
from serkit.serve.app import create_app  # noqa: E402
from serkit.serve.settings import Settings  # noqa: E402
from serkit.streaming import SlidingWindow, decode_pcm  # noqa: E402

CLIP = "16a01Wb.wav"  # speaker 16 is not in the training manifest


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def serve_model_dir(small_model_dir):
    """An egemaps-svm model trained on 36 EmoDB clips (3 speakers x angry/sad/neutral x 4)."""
    return small_model_dir


@pytest.fixture(scope="session")
def recognizer(serve_model_dir):
    return Recognizer.load(serve_model_dir)


@pytest.fixture(scope="session")
def clip():
    from tests.conftest import data_dir

    return data_dir("emodb") / "wav" / CLIP


@pytest.fixture(scope="session")
def long_clip(clip, tmp_path_factory):
    """~10 s of speech: four EmoDB clips back to back."""
    from tests.conftest import data_dir

    wav = data_dir("emodb") / "wav"
    parts = [sf.read(wav / n, dtype="float32")[0] for n in (CLIP, "16a01Tb.wav", "16a02Wb.wav", "16a02Tc.wav")]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


@pytest.fixture(scope="session")
def client(recognizer):
    with TestClient(create_app(recognizer, Settings())) as c:
        yield c


def make_client(recognizer, **settings):
    return TestClient(create_app(recognizer, Settings(**settings)))


class LiveServer:
    """uvicorn in a background thread on a free loopback port."""

    def __init__(self, app, settings=None, log_level="warning"):
        import uvicorn

        from serkit.serve.server import uvicorn_config

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level=log_level, lifespan="on", **uvicorn_config(settings or Settings()))
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="session")
def live(recognizer):
    with LiveServer(create_app(recognizer, Settings())) as server:
        yield server


def wav_bytes(signal, sr=16000, fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, signal, sr, format=fmt)
    return buf.getvalue()


def post(client, path, data: bytes, name="clip.wav", ctype="audio/wav", **kw):
    return client.post(path, files={"file": (name, data, ctype)}, **kw)


# -- endpoints --------------------------------------------------------------------------------------
def test_predict_matches_the_python_api(client, recognizer, clip):
    r = post(client, "/v1/predict", clip.read_bytes(), name=CLIP)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = recognizer.predict_file(clip).iloc[0]
    assert body["file"] == CLIP
    assert body["label"] == expected["label"] in ("angry", "neutral", "sad")
    assert set(body["probabilities"]) == {"angry", "neutral", "sad"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    for label, p in body["probabilities"].items():
        assert p == pytest.approx(expected[f"p_{label}"], abs=1e-9)
    assert body["duration"] == pytest.approx(sf.info(clip).duration, abs=1e-3)


def test_predict_accepts_flac_and_octet_stream(client, clip):
    signal, sr = sf.read(clip, dtype="float32")
    r = post(client, "/v1/predict", wav_bytes(signal, sr, "FLAC"), name="clip.flac", ctype="application/octet-stream")
    assert r.status_code == 200, r.text
    assert r.json()["duration"] == pytest.approx(len(signal) / sr, abs=1e-3)


def test_timeline_windows(client, long_clip):
    from serkit.windows import spans

    r = post(client, "/v1/timeline?window=4&hop=2", long_clip.read_bytes(), name="long.wav")
    assert r.status_code == 200, r.text
    body = r.json()
    duration = sf.info(long_clip).duration
    assert body["duration"] == pytest.approx(duration, abs=1e-3)
    expected = list(spans(duration, window=4.0, hop=2.0, sampling_rate=16000))
    assert [(w["start"], w["end"]) for w in body["windows"]] == [pytest.approx(e, abs=1e-3) for e in expected]
    assert all(w["label"] in ("angry", "neutral", "sad") for w in body["windows"])
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)


def test_models_healthz_metrics_docs(client, clip):
    m = client.get("/v1/models").json()
    assert m["labels"] == ["angry", "neutral", "sad"] and m["sampling_rate"] == 16000
    assert m["recipe"]["name"] == "egemaps-svm" and m["trained_on"]["n_utterances"] >= 30
    assert m["limits"]["max_upload_mb"] == 20 and m["limits"]["auth"] is False
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok"
    post(client, "/v1/predict", clip.read_bytes())
    post(client, "/v1/predict", b"not audio")
    text = client.get("/metrics").text
    assert 'serkit_http_requests_total{method="POST",route="/v1/predict",status="200"}' in text
    assert 'serkit_http_errors_total{route="/v1/predict",status="422"}' in text
    assert 'serkit_http_request_duration_seconds_bucket{route="/v1/predict",le="+Inf"}' in text
    assert "# TYPE serkit_inference_duration_seconds histogram" in text
    client.get("/no/such/page/12345")
    assert "/no/such" not in client.get("/metrics").text  # unknown paths are folded into route="other"
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/timeline", "/v1/models", "/healthz", "/metrics"} <= set(spec["paths"])
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn." not in docs
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_page_and_assets_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    static = Path(__import__("serkit.serve.app", fromlist=["STATIC_DIR"]).STATIC_DIR)
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text()
        assert "http://" not in text and "https://" not in text and "cdn" not in text.lower(), name
        assert client.get(f"/static/{name}" if name != "index.html" else "/").status_code == 200


# -- bad input ----------------------------------------------------------------------------------------
def _silent():
    return wav_bytes(np.zeros(16000, np.float32))


BAD_UPLOADS = {
    "empty": (b"", "audio/wav", 422, "empty"),
    "text renamed .wav": (b"not audio at all\n" * 50, "audio/wav", 422, "cannot decode"),
    "truncated header": ("truncated", "audio/wav", 422, ""),
    "silent": ("silent", "audio/wav", 422, "silent"),
    "too short": ("short", "audio/wav", 422, "shorter than"),
    "image part": ("good", "image/png", 415, "content type 'image/png'"),
    "text part": ("good", "text/plain", 415, "send audio"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_clear_4xx(client, clip, case):
    data, ctype, status, words = BAD_UPLOADS[case]
    data = {
        "truncated": clip.read_bytes()[:40],
        "silent": _silent(),
        "good": clip.read_bytes(),
        "short": wav_bytes(np.full(400, 0.1, np.float32)),
    }.get(data, data)
    for path in ("/v1/predict", "/v1/timeline"):
        r = post(client, path, data, ctype=ctype)
        assert r.status_code == status, (path, r.text)
        detail = r.json()["detail"]
        assert words in detail
        assert "serkit-upload-" not in detail and "/tmp" not in detail  # no server paths leak


def test_wrong_request_shapes(client, clip):
    r = client.post("/v1/predict", content=clip.read_bytes(), headers={"content-type": "audio/wav"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = client.post("/v1/predict", json={"file": "/etc/passwd"})
    assert r.status_code == 415
    r = client.post("/v1/predict", data={"audio": "x"}, files={"other": ("a.wav", clip.read_bytes(), "audio/wav")})
    assert r.status_code == 400 and "field 'file'" in r.json()["detail"]
    r = client.post("/v1/predict", content=b"--nope\r\n", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400
    r = post(client, "/v1/timeline?window=0.1", clip.read_bytes())
    assert r.status_code == 422
    # a sentence, as the OpenAPI schema says (ErrorResponse.detail: string), not FastAPI's list
    assert r.json()["detail"].startswith(
        "query parameter 'window' = '0.1': Input should be greater than or equal to 0.5"
    )
    r = post(client, "/v1/timeline?hop=abc", clip.read_bytes())
    assert r.status_code == 422 and "query parameter 'hop' = 'abc'" in r.json()["detail"]


def test_client_file_names_never_reach_the_file_system(client, clip, tmp_path):
    # the name points at a real, readable clip; the content is garbage: only the content may count
    r = post(client, "/v1/predict", b"garbage" * 100, name=str(clip))
    assert r.status_code == 422 and "cannot decode" in r.json()["detail"]
    target = tmp_path / "escape.wav"
    r = post(client, "/v1/predict", clip.read_bytes(), name=f"../../../../{target}")
    assert r.status_code == 200 and r.json()["file"] == "escape.wav"
    assert not target.exists()


def test_upload_size_limit(recognizer, clip):
    with make_client(recognizer, max_upload_mb=0.02) as c:
        data = clip.read_bytes()  # 64 KB > 20 KB
        r = post(c, "/v1/predict", data)
        assert r.status_code == 413
        assert "upload is" in r.json()["detail"] and "limit is 0.02 MB (SERKIT_MAX_UPLOAD_MB)" in r.json()["detail"]

        def chunks():  # no Content-Length: the server must cut the stream off itself
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            for _ in range(200):
                yield b"\0" * 4096

        r = c.post("/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "SERKIT_MAX_UPLOAD_MB" in r.json()["detail"]


def test_duration_and_window_limits(recognizer, clip, long_clip):
    with make_client(recognizer, max_duration_s=1.5, max_windows=3) as c:
        r = post(c, "/v1/predict", clip.read_bytes())
        assert r.status_code == 413 and "2.0 s long; the limit is 1.5 s (SERKIT_MAX_DURATION_S)" in r.json()["detail"]
    with make_client(recognizer, max_windows=3) as c:
        r = post(c, "/v1/timeline?window=1&hop=0.5", long_clip.read_bytes())
        assert r.status_code == 422 and "SERKIT_MAX_WINDOWS" in r.json()["detail"]


def test_settings_from_env():
    s = Settings.from_env({"SERKIT_MAX_UPLOAD_MB": "5", "SERKIT_API_KEYS": " a, b ,", "SERKIT_MAX_PENDING": "3"})
    assert s.max_upload_mb == 5 and s.api_keys == ("a", "b") and s.max_pending == 3
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match="SERKIT_MAX_UPLOAD_MB='lots' is not a number"):
        Settings.from_env({"SERKIT_MAX_UPLOAD_MB": "lots"})
    with pytest.raises(ConfigError, match="SERKIT_INFERENCE_THREADS='0' must be at least 1"):
        Settings.from_env({"SERKIT_INFERENCE_THREADS": "0"})


def test_api_keys(recognizer, clip):
    with make_client(recognizer, api_keys=("s3cret", "other")) as c:
        assert c.get("/healthz").status_code == 200  # probes need no key
        assert c.get("/").status_code == 200
        r = c.get("/v1/models")
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
        assert c.get("/v1/models", headers={"X-API-Key": "s3cre"}).status_code == 401
        assert c.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/v1/models", headers={"Authorization": "Bearer other"}).status_code == 200
        assert post(c, "/v1/predict", clip.read_bytes()).status_code == 401
        assert post(c, "/v1/predict", clip.read_bytes(), headers={"X-API-Key": "s3cret"}).status_code == 200
        from starlette.websockets import WebSocketDisconnect

        with pytest.raises(WebSocketDisconnect) as refused:  # refused in the handshake, never accepted
            with c.websocket_connect("/v1/stream?api_key=wrong"):
                pass
        assert refused.value.code == 1008 and "API key" in refused.value.reason
        with c.websocket_connect("/v1/stream?api_key=s3cret") as ws:
            assert ws.receive_json()["type"] == "ready"


# -- streaming ------------------------------------------------------------------------------------------
def test_sliding_window_times_and_chunking(recognizer, clip):
    signal, sr = sf.read(clip, dtype="float32")  # 2.0 s
    signal = np.concatenate([signal, signal, signal[: sr // 2]])  # 4.5 s
    results = []
    for sizes in ([len(signal)], [160] * (len(signal) // 160 + 1), [7777] * (len(signal) // 7777 + 1)):
        eng = SlidingWindow(recognizer, sampling_rate=sr, window=2.0, hop=1.0)
        parts, at = [], 0
        for n in sizes:
            if at >= len(signal):
                break
            parts.append(eng.feed(signal[at : at + n]))
            at += n
        parts.append(eng.flush())
        import pandas as pd

        results.append(pd.concat(parts, ignore_index=True))
    table = results[0]
    assert list(zip(table["start"], table["end"])) == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0), (2.5, 4.5)]
    for other in results[1:]:  # how the audio is cut into chunks does not change the answer
        assert other[["start", "end", "label"]].values.tolist() == table[["start", "end", "label"]].values.tolist()
        np.testing.assert_allclose(other["p_angry"], table["p_angry"], atol=1e-9)
    # window [0, 2] is exactly the clip: same probabilities as the Python API on that signal
    from serkit.audio import resample

    ref = recognizer.predict_signals([resample(signal[: 2 * sr], sr, recognizer.sampling_rate)]).iloc[0]
    assert table.iloc[0]["p_angry"] == pytest.approx(ref["p_angry"], abs=1e-9)


def test_sliding_window_memory_resampling_and_silence(recognizer):
    eng = SlidingWindow(recognizer, sampling_rate=48000, window=1.0, hop=0.5)
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(40):  # 20 s of noise in 0.5 s chunks
        rows = eng.feed((0.1 * rng.standard_normal(24000)).astype(np.float32))
        n += len(rows)
        assert eng.cutter._buffer.size <= 48000 + 24000  # one window plus one hop
    assert n == 39 and eng.duration == pytest.approx(20.0)
    silent = eng.feed(np.zeros(72000, np.int16))  # the first new window still holds 0.5 s of noise
    assert list(silent["error"]) == ["", "silence", "silence"] and list(silent["label"])[1:] == ["", ""]
    short = SlidingWindow(recognizer, sampling_rate=16000, window=2.0, hop=1.0)
    assert len(short.feed(np.full(8000, 1000, np.int16))) == 0
    tail = short.flush()
    assert list(zip(tail["start"], tail["end"])) == [(0.0, 0.5)]


def test_decode_pcm_errors():
    assert decode_pcm(np.array([0.25, -1], "<f4").tobytes()).tolist() == [0.25, -1.0]
    with pytest.raises(AudioError, match="whole 2-byte samples"):
        decode_pcm(b"\0\0\0", "s16")
    with pytest.raises(AudioError, match="NaN"):
        decode_pcm(np.array([np.nan], "<f4").tobytes())
    from serkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown PCM format"):
        decode_pcm(b"", "u8")
    with pytest.raises(ConfigError, match="outside"):
        SlidingWindow(None, sampling_rate=100)


def test_websocket_stream(client, recognizer, clip):
    signal, sr = sf.read(clip, dtype="float32")
    pcm = (np.concatenate([signal, signal]) * 32767).astype("<i2").tobytes()
    with client.websocket_connect(f"/v1/stream?rate={sr}&format=s16&window=2&hop=1") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["labels"] == ["angry", "neutral", "sad"]
        for i in range(0, len(pcm), 3200):  # 100 ms chunks
            ws.send_bytes(pcm[i : i + 3200])
        ws.send_text(json.dumps({"type": "end"}))
        msgs = []
        while True:
            m = ws.receive_json()
            if m["type"] == "end":
                break
            msgs.append(m)
    assert [(m["start"], m["end"]) for m in msgs] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    assert m["duration"] == pytest.approx(4.0)
    assert all(sum(w["probabilities"].values()) == pytest.approx(1.0) for w in msgs)
    from serkit.audio import resample

    ref = recognizer.predict_signals([resample(signal, sr, recognizer.sampling_rate)]).iloc[0]
    assert msgs[0]["label"] == ref["label"]
    assert msgs[0]["probabilities"]["sad"] == pytest.approx(ref["p_sad"], abs=1e-3)  # int16 rounding


@pytest.mark.parametrize(
    "query,send,words",
    [
        ("format=u8", None, "format 'u8'"),
        ("rate=100", None, "outside"),
        ("window=abc", None, "must be numbers"),
        ("window=0.01", None, "window"),
        ("format=s16", b"\0\0\0", "whole 2-byte samples"),
        ("", "hello", "text messages must be"),
        ("", b"\0" * (1024 * 1024 + 4), "SERKIT_MAX_CHUNK_KB"),
    ],
)
def test_websocket_bad_input(client, query, send, words):
    with client.websocket_connect(f"/v1/stream?{query}") as ws:
        m = ws.receive_json()
        if send is not None:
            assert m["type"] == "ready"
            ws.send_bytes(send) if isinstance(send, bytes) else ws.send_text(send)
            m = ws.receive_json()
        assert m["type"] == "error" and words in m["message"]


# -- behaviour under load ------------------------------------------------------------------------------
class SlowRecognizer:
    """Wraps a recognizer; every file prediction takes ``delay`` seconds longer."""

    def __init__(self, rec, delay):
        self._rec, self.delay = rec, delay

    def __getattr__(self, name):
        return getattr(self._rec, name)

    def predict_file(self, path):
        time.sleep(self.delay)
        return self._rec.predict_file(path)


def test_slow_inference_does_not_block_other_requests(recognizer, clip):
    import httpx

    app = create_app(SlowRecognizer(recognizer, 1.5), Settings(inference_threads=1, max_pending=2))
    with LiveServer(app) as server:
        results = {}

        def slow(i):
            with httpx.Client(base_url=server.url, timeout=30) as c:
                results[i] = c.post("/v1/predict", files={"file": ("a.wav", clip.read_bytes(), "audio/wav")})

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
        threads[0].start()
        time.sleep(0.3)
        with httpx.Client(base_url=server.url, timeout=30) as c:
            t0 = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            assert c.get("/v1/models").status_code == 200
            assert time.perf_counter() - t0 < 0.5  # not stuck behind the 1.5 s prediction
        for t in threads[1:]:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results.values())
        assert codes == [200, 200, 503]  # 2 jobs allowed in flight, the third is told to retry
        busy = next(r for r in results.values() if r.status_code == 503)
        assert busy.headers["retry-after"] == "1" and "SERKIT_MAX_PENDING" in busy.json()["detail"]


# -- the command ------------------------------------------------------------------------------------------
def test_serve_without_model_serves_the_shipped_default_model(tmp_path):
    """No --model: the default model (6 classes), its scores on /v1/models, a clip predicted."""
    with TestClient(create_app(Recognizer.load(None), Settings())) as c:
        info = c.get("/v1/models").json()
        assert info["labels"] == ["angry", "disgust", "fear", "happy", "neutral", "sad"]
        assert info["recipe"]["name"] == "default" and "loco" in info["metrics"]
        clip = Path(__file__).resolve().parents[1] / "examples" / "audio" / "tts-plain.flac"
        r = c.post("/v1/predict", files={"file": (clip.name, clip.read_bytes(), "audio/flac")})
        assert r.status_code == 200, r.text
        assert abs(sum(r.json()["probabilities"].values()) - 1.0) < 1e-6


def test_serve_with_a_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_serve_command_runs_and_stops(serve_model_dir, tmp_path):
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "serkit.cli", "serve", "--model", str(serve_model_dir), "--port", str(port), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(f"server did not start: {proc.stdout.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["labels"] == 3
    finally:
        proc.terminate()
        proc.wait(10)

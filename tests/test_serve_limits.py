"""The service under abusive clients: slow heads and bodies, too many connections, WebSocket auth and frames, logs."""

from __future__ import annotations

import base64
import logging
import os
import socket
import time

import pytest

pytest.importorskip("fastapi", reason="the service needs pip install 'serkit[serve]'")
pytest.importorskip("uvicorn", reason="the service needs pip install 'serkit[serve]'")
pytest.importorskip("multipart", reason="the service needs pip install 'serkit[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from serkit.errors import ConfigError  # noqa: E402
from serkit.serve.app import create_app  # noqa: E402
from serkit.serve.settings import Settings  # noqa: E402
from tests.test_serve import LiveServer, clip, recognizer, serve_model_dir  # noqa: E402,F401  (fixtures)


class TinyRecognizer:
    """Enough of a Recognizer for the transport tests (no model needed)."""

    labels = ["a", "b"]
    sampling_rate = 16000
    metadata: dict = {}


@pytest.fixture(scope="module")
def limited():
    settings = Settings(
        header_timeout_s=1.0,
        body_timeout_s=1.0,
        upload_timeout_s=3.0,
        keep_alive_s=1.0,
        max_connections=20,
        api_keys=("s3cret",),
    )
    with LiveServer(create_app(TinyRecognizer(), settings), settings) as server:
        yield server


def _connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return s


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes; (closed in time, bytes received)."""
    sock.settimeout(0.2)
    got = b""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def test_half_sent_request_heads_are_dropped(limited):
    socks = [_connect(limited) for _ in range(10)]
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
    t0 = time.monotonic()
    results = [_closed_within(s, 5.0) for s in socks]
    assert all(closed for closed, _ in results)
    assert time.monotonic() - t0 < 5.0
    for s in socks:
        s.close()


def test_a_keep_alive_connection_gets_the_head_deadline_again(limited):
    s = _connect(limited)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the second request head never ends
    closed, got = _closed_within(s, 5.0)
    assert closed and got.startswith(b"HTTP/1.1 200")
    s.close()


def test_a_stalled_upload_body_gets_408(limited):
    s = _connect(limited)
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF'
    s.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n" + body
    )
    t0 = time.monotonic()
    closed, got = _closed_within(s, 6.0)
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b"SERKIT_BODY_TIMEOUT_S" in got
    assert time.monotonic() - t0 < 4.0
    s.close()


def test_a_trickling_upload_hits_the_whole_upload_deadline(limited):
    s = _connect(limited)
    s.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: s3cret\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n"
    )
    got = b""
    end = time.monotonic() + 8
    s.settimeout(0.5)
    while time.monotonic() < end and not got:
        try:
            s.sendall(b"x")  # one byte every half second: never idle 1 s, never done
            got = s.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    got += _closed_within(s, 2.0)[1]
    assert got.startswith(b"HTTP/1.1 408") and b"SERKIT_UPLOAD_TIMEOUT_S" in got, got[:300]
    s.close()


def test_connections_over_the_limit_are_refused_and_the_service_recovers(limited):
    import httpx

    held = [_connect(limited) for _ in range(30)]
    time.sleep(0.3)
    closed = sum(_closed_within(s, 0.5)[0] for s in held)
    assert closed >= 10  # everything over 20 open connections is closed on arrival
    for s in held:
        s.close()
    time.sleep(1.5)
    assert httpx.get(f"{limited.url}/healthz", timeout=5).status_code == 200


def _ws_handshake(server, query: str) -> bytes:
    s = _connect(server)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /v1/stream?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    s.settimeout(5)
    head = s.recv(4096)
    s.close()
    return head


def test_websocket_with_a_wrong_key_is_refused_before_the_upgrade(limited):
    assert _ws_handshake(limited, "api_key=wrong").startswith(b"HTTP/1.1 403")
    assert _ws_handshake(limited, "api_key=s3cret").startswith(b"HTTP/1.1 101")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_api_key_is_redacted_in_the_access_log():
    settings = Settings(api_keys=("s3cret",))
    server = LiveServer(create_app(TinyRecognizer(), settings), settings, log_level="info")
    seen = _Collect()
    with server:
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).addHandler(seen)
        try:
            assert _ws_handshake(server, "rate=16000&api_key=s3cret").startswith(b"HTTP/1.1 101")
            s = _connect(server)
            s.sendall(b"GET /healthz?api_key=s3cret&x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            _closed_within(s, 3)
            time.sleep(0.5)
        finally:
            for name in ("uvicorn.access", "uvicorn.error"):
                logging.getLogger(name).removeHandler(seen)
    text = "\n".join(seen.lines)
    assert "/v1/stream?rate=16000&api_key=***" in text and "/healthz?api_key=***&x=1" in text, text
    assert "s3cret" not in text


def test_invalid_utf8_text_frame_logs_no_traceback(limited, caplog):
    s = _connect(limited)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /v1/stream?api_key=s3cret HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    with caplog.at_level(logging.DEBUG):
        closed, got = _closed_within(s, 0.5)
        assert b"101 Switching Protocols" in got and b'"ready"' in got
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\xff\xfe\xfd"))  # not UTF-8
        s.sendall(bytes([0x81, 0x80 | 3]) + mask + payload)  # one masked text frame
        closed, got = _closed_within(s, 5.0)
        time.sleep(0.3)
    s.close()
    assert closed and got[:1] == b"\x88"  # the server's close frame ...
    assert int.from_bytes(got[2:4], "big") == 1007  # ... with 1007 (invalid data)
    assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


def test_metrics_can_require_the_key():
    open_ = TestClient(create_app(TinyRecognizer(), Settings(api_keys=("k",))))
    assert open_.get("/metrics").status_code == 200  # the default: scrapers need no key
    closed = TestClient(
        create_app(TinyRecognizer(), Settings.from_env({"SERKIT_API_KEYS": "k", "SERKIT_METRICS_PUBLIC": "0"}))
    )
    r = closed.get("/metrics")
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
    assert closed.get("/metrics", headers={"X-API-Key": "k"}).status_code == 200


def test_limit_settings_from_the_environment():
    s = Settings.from_env(
        {
            "SERKIT_HEADER_TIMEOUT_S": "3",
            "SERKIT_BODY_TIMEOUT_S": "4",
            "SERKIT_MAX_CONNECTIONS": "9",
            "SERKIT_KEEP_ALIVE_S": "2",
            "SERKIT_UPLOAD_TIMEOUT_S": "60",
            "SERKIT_METRICS_PUBLIC": "false",
        }
    )
    assert (
        s.header_timeout_s,
        s.body_timeout_s,
        s.max_connections,
        s.keep_alive_s,
        s.upload_timeout_s,
        s.metrics_public,
    ) == (3, 4, 9, 2, 60, False)
    with pytest.raises(ConfigError, match="SERKIT_METRICS_PUBLIC='maybe' must be 1 or 0"):
        Settings.from_env({"SERKIT_METRICS_PUBLIC": "maybe"})
    from serkit.serve.server import uvicorn_config

    cfg = uvicorn_config(s)
    assert cfg["limit_concurrency"] == 9 and cfg["timeout_keep_alive"] == 2

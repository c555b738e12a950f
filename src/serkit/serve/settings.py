"""Limits and options of the HTTP service (:class:`Settings`), read from ``SERKIT_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from ..audio import DEFAULT_MAX_DURATION_S, duration_limit_s
from ..errors import ConfigError
from ..windows import StreamLimits

__all__ = ["Settings", "MB"]

MB = 1024 * 1024

_FALSE = ("0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")


def _env_number(environ, name: str, default, kind=float, minimum=None):
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; e.g. {name}={default}"
        ) from None
    if minimum is not None and not value >= minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}; e.g. {name}={default}")
    return value


def _env_flag(environ, name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} must be 1 or 0 (true/false); e.g. {name}={int(default)}")


@dataclass(frozen=True)
class Settings:
    """Limits and options of the service; :meth:`from_env` reads them from ``SERKIT_*`` variables.

    Attributes
    ----------
    max_upload_mb
        Largest upload (MB); ``SERKIT_MAX_UPLOAD_MB``.
    max_duration_s
        Longest audio accepted by ``/v1/predict`` and ``/v1/timeline`` (seconds); ``SERKIT_MAX_DURATION_S``.
    max_windows
        Most windows one ``/v1/timeline`` request may ask for; ``SERKIT_MAX_WINDOWS``.
    max_stream_s
        Longest ``/v1/stream`` session (seconds of audio); ``SERKIT_MAX_STREAM_S``.
    max_chunk_kb
        Largest WebSocket PCM message (KB); ``SERKIT_MAX_CHUNK_KB``.
    inference_threads
        Threads that run the model; ``SERKIT_INFERENCE_THREADS``.
    max_pending
        Inference jobs allowed to wait or run at once before new ones get 503; ``SERKIT_MAX_PENDING``.
    api_keys
        Accepted API keys; empty means no authentication. ``SERKIT_API_KEYS`` (comma-separated).
    metrics_public
        Whether ``/metrics`` answers without a key when ``api_keys`` is set; ``SERKIT_METRICS_PUBLIC``
        (default 1: Prometheus scrapers often cannot send headers; set 0 to require the key).
    header_timeout_s
        Time a client has to send a complete request head (request line and headers) after it
        connects or after its previous response; the connection is closed after it.
        ``SERKIT_HEADER_TIMEOUT_S``.
    body_timeout_s
        Longest wait for the next piece of an upload body (seconds) before answering 408;
        ``SERKIT_BODY_TIMEOUT_S``.
    upload_timeout_s
        Longest time a whole upload body may take (seconds) before answering 408;
        ``SERKIT_UPLOAD_TIMEOUT_S``.
    keep_alive_s
        Idle time after a response before a keep-alive connection is closed; ``SERKIT_KEEP_ALIVE_S``.
    max_connections
        Open connections (HTTP and WebSocket) at once; more are closed on arrival, and requests over
        the limit get 503. ``SERKIT_MAX_CONNECTIONS``.
    shutdown_timeout_s
        On SIGTERM, how long running requests may finish before they are cancelled;
        ``SERKIT_SHUTDOWN_TIMEOUT_S``.
    stream_max_overlap, stream_max_windows_per_message, stream_max_windows_per_s
        WebSocket work bounds, the window engine's :class:`serkit.windows.StreamLimits`: the largest
        window/hop ratio (``SERKIT_STREAM_MAX_OVERLAP``), windows one message may complete
        (``SERKIT_STREAM_MAX_WINDOWS_PER_MESSAGE``) and windows per second of wall time
        (``SERKIT_STREAM_MAX_WINDOWS_PER_S``).
    """

    max_upload_mb: float = 20.0
    max_duration_s: float = DEFAULT_MAX_DURATION_S
    max_windows: int = 1000
    max_stream_s: float = 3600.0
    max_chunk_kb: int = 1024
    inference_threads: int = 2
    max_pending: int = 64
    api_keys: tuple = field(default=(), repr=False)
    metrics_public: bool = True
    header_timeout_s: float = 10.0
    body_timeout_s: float = 15.0
    upload_timeout_s: float = 120.0
    keep_alive_s: float = 5.0
    max_connections: int = 256
    shutdown_timeout_s: float = 10.0
    stream_max_overlap: float = 20.0
    stream_max_windows_per_message: int = 64
    stream_max_windows_per_s: float = 20.0

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Settings:
        env = os.environ if environ is None else environ
        keys = tuple(k.strip() for k in env.get("SERKIT_API_KEYS", "").split(",") if k.strip())
        stream = StreamLimits.from_env(env)  # the engine's reader: one rule for the CLI stream and the service
        s = cls(
            max_upload_mb=_env_number(env, "SERKIT_MAX_UPLOAD_MB", cls.max_upload_mb, minimum=0.001),
            max_duration_s=duration_limit_s(env),
            max_windows=_env_number(env, "SERKIT_MAX_WINDOWS", cls.max_windows, int, minimum=1),
            max_stream_s=_env_number(env, "SERKIT_MAX_STREAM_S", cls.max_stream_s, minimum=1),
            max_chunk_kb=_env_number(env, "SERKIT_MAX_CHUNK_KB", cls.max_chunk_kb, int, minimum=1),
            inference_threads=_env_number(env, "SERKIT_INFERENCE_THREADS", cls.inference_threads, int, minimum=1),
            max_pending=_env_number(env, "SERKIT_MAX_PENDING", cls.max_pending, int, minimum=1),
            api_keys=keys,
            metrics_public=_env_flag(env, "SERKIT_METRICS_PUBLIC", cls.metrics_public),
            header_timeout_s=_env_number(env, "SERKIT_HEADER_TIMEOUT_S", cls.header_timeout_s, minimum=0.1),
            body_timeout_s=_env_number(env, "SERKIT_BODY_TIMEOUT_S", cls.body_timeout_s, minimum=0.1),
            upload_timeout_s=_env_number(env, "SERKIT_UPLOAD_TIMEOUT_S", cls.upload_timeout_s, minimum=1),
            keep_alive_s=_env_number(env, "SERKIT_KEEP_ALIVE_S", cls.keep_alive_s, minimum=0.1),
            max_connections=_env_number(env, "SERKIT_MAX_CONNECTIONS", cls.max_connections, int, minimum=1),
            shutdown_timeout_s=_env_number(env, "SERKIT_SHUTDOWN_TIMEOUT_S", cls.shutdown_timeout_s, minimum=0),
            stream_max_overlap=stream.max_overlap,
            stream_max_windows_per_message=stream.max_windows_per_message,
            stream_max_windows_per_s=stream.max_windows_per_s,
        )
        return replace(s, **overrides) if overrides else s

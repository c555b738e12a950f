"""Running the service under uvicorn with its connection limits: request-head timeout, connection cap.

uvicorn's own knobs cover keep-alive idle time (``timeout_keep_alive``), requests over a
concurrency limit (``limit_concurrency``: 503) and the graceful-shutdown wait. It has no deadline
for a request *head*: a client that sends half a header line holds its connection (and a file
descriptor) for ever. The protocol class of :func:`protocol_class` adds that deadline and refuses connections over
``max_connections`` on arrival. Upload bodies have their own timeouts in :mod:`serkit.serve.uploads`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .accesslog import redact_logs
from .settings import Settings

__all__ = ["serve", "app_from_env", "uvicorn_config", "protocol_class", "ws_protocol_class"]

log = logging.getLogger("serkit.serve")

#: Largest request head (request line + headers) h11 buffers before answering 400.
MAX_HEAD_BYTES = 32 * 1024


def _protocol_base():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def _make_protocol_class():
    import h11

    class LimitedH11Protocol(_protocol_base()):
        """uvicorn's h11 protocol plus a request-head deadline and a cap on open connections."""

        settings: Settings | None = None

        def _limits(self) -> Settings:
            if type(self).settings is None:
                type(self).settings = Settings.from_env()
            return type(self).settings

        def connection_made(self, transport) -> None:
            self._head_timer = None
            super().connection_made(transport)
            limits = self._limits()
            if len(self.connections) > limits.max_connections:
                log.warning(
                    "refused a connection: %d open (SERKIT_MAX_CONNECTIONS=%d)",
                    len(self.connections) - 1,
                    limits.max_connections,
                )
                transport.close()
                return
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(self._limits().header_timeout_s, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if getattr(self, "_head_timer", None) is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                # no complete request head in time (slowloris): free the connection
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if getattr(self, "_head_timer", None) is not None and self.conn.their_state is not h11.IDLE:
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm_head_timer()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

    return LimitedH11Protocol


def _make_ws_protocol_class():
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.exceptions import InvalidState

    class QuietWebSocketsProtocol(WebSocketsSansIOProtocol):
        """uvicorn's WebSocket protocol, closing with 1007 on a text message that is not UTF-8
        (uvicorn logs a traceback there and then fails on the already-closing connection)."""

        def send_receive_event_to_app(self) -> None:
            if self.curr_msg_data_type == "text" and not self.close_sent:
                data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
                try:
                    bytes(data).decode()
                except UnicodeDecodeError:
                    self.frames = []
                    self.logger.warning("closed a WebSocket: a text message was not valid UTF-8 (1007)")
                    try:
                        self.conn.send_close(1007, "text messages must be UTF-8")
                    except InvalidState:  # websockets already answered the bad frame
                        pass
                    self.queue.put_nowait(
                        {"type": "websocket.disconnect", "code": 1007, "reason": "text messages must be UTF-8"}
                    )
                    self.transport.write(b"".join(self.conn.data_to_send()))
                    self.close_sent = True
                    self.transport.close()
                    return
            super().send_receive_event_to_app()

    return QuietWebSocketsProtocol


_PROTOCOL: dict = {}


def protocol_class():
    """uvicorn's h11 protocol with the request-head deadline and connection cap (built on first use:
    uvicorn is an optional dependency)."""
    if "http" not in _PROTOCOL:
        _PROTOCOL["http"] = _make_protocol_class()
    return _PROTOCOL["http"]


def ws_protocol_class():
    """uvicorn's WebSocket protocol that closes on invalid UTF-8 without a server-side traceback."""
    if "ws" not in _PROTOCOL:
        _PROTOCOL["ws"] = _make_ws_protocol_class()
    return _PROTOCOL["ws"]


def __getattr__(name):
    # "serkit.serve.server:LimitedH11Protocol" for uvicorn worker processes, which import it by name
    if name == "LimitedH11Protocol":
        return protocol_class()
    if name == "QuietWebSocketsProtocol":
        return ws_protocol_class()
    raise AttributeError(name)


def uvicorn_config(settings: Settings) -> dict:
    """The uvicorn keyword arguments that enforce ``settings``' connection limits."""
    protocol = protocol_class()
    protocol.settings = settings
    return {
        "http": protocol,
        "ws": ws_protocol_class(),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.max_connections,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "ws_max_size": settings.max_chunk_kb * 1024 + 1024,
    }


def app_from_env():
    """App factory for uvicorn worker processes: the model folder comes from ``SERKIT_MODEL``."""
    from ..inference import Recognizer
    from .app import create_app

    model = os.environ.get("SERKIT_MODEL") or None
    return create_app(Recognizer.load(model), model_dir=model)


def serve(
    model_dir=None, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "info"
) -> None:
    """Run the service with uvicorn until interrupted (SIGINT or SIGTERM).

    ``workers > 1`` starts that many processes, each with its own copy of the model. On SIGTERM
    running requests get ``SERKIT_SHUTDOWN_TIMEOUT_S`` to finish; feature worker processes are
    stopped with the service.
    """
    from ..inference import Recognizer
    from ..runtime import kill_pools
    from .app import _import_fastapi, create_app

    # load first, so a bad or missing --model fails with the usual message before anything starts
    rec = Recognizer.load(model_dir)
    _import_fastapi()
    import uvicorn

    settings = Settings.from_env()
    options = uvicorn_config(settings)
    redact_logs()
    try:
        if workers > 1:
            os.environ["SERKIT_MODEL"] = str(Path(model_dir).resolve()) if model_dir else ""
            # worker processes import the protocol by name; it reads the limits from the environment
            options["http"] = "serkit.serve.server:LimitedH11Protocol"
            options["ws"] = "serkit.serve.server:QuietWebSocketsProtocol"
            uvicorn.run(
                "serkit.serve.server:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                **options,
            )
        else:
            uvicorn.run(
                create_app(rec, settings, model_dir=model_dir), host=host, port=port, log_level=log_level, **options
            )
    finally:
        kill_pools()

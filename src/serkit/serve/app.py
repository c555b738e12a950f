"""The serkit HTTP service: a FastAPI app over :class:`~serkit.inference.Recognizer` and its web page.

Endpoints: ``POST /v1/predict``, ``POST /v1/timeline``, ``WebSocket /v1/stream``, ``GET /v1/models``,
``GET /healthz``, ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI) and the page at ``/``.
Predictions go through the same Recognizer methods as the CLI and the Python API.

Safety rules the code keeps:

- an upload is written to a temporary file whose name the server makes up; nothing a client sends
  (file name included) is ever used as a path;
- every limit (upload size, duration, windows, queue length, stream length) answers a 4xx/503
  whose message names the value, the limit and the environment variable that sets it;
- inference runs in a bounded thread pool, off the event loop, so a slow request does not block
  health checks, metrics or other requests;
- a client cannot hold a connection by sending slowly: request heads, upload bodies and idle
  keep-alive connections have deadlines, and open connections are capped (:mod:`.server`,
  :mod:`.uploads`).

The package: :mod:`.settings` (limits from ``SERKIT_*``), :mod:`.metrics` (Prometheus counters and
middleware), :mod:`.uploads` (multipart parsing and upload limits), this module (the endpoints,
:func:`create_app`) and :mod:`.server` (running it under uvicorn: :func:`~.server.serve`).
"""

import asyncio
import contextlib
import hmac
import json
import logging
import math
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import AudioError, ConfigError, SerkitError
from .metrics import Metrics, MetricsMiddleware
from .settings import MB, Settings
from .uploads import ClientError as _ClientError
from .uploads import display_name, receive_upload

__all__ = ["create_app"]

log = logging.getLogger("serkit.serve")

STATIC_DIR = Path(__file__).parent / "static"


def _import_fastapi():
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart, for form parsing)
    except ImportError as exc:
        raise ConfigError(
            f"the HTTP service needs FastAPI, uvicorn and python-multipart ({exc}); "
            "install them with: pip install 'serkit[serve]'"
        ) from None


# -- helpers ----------------------------------------------------------------------------------------
def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _row_json(row: dict, labels) -> dict:
    return {
        "start": _finite(row["start"]),
        "end": _finite(row["end"]),
        "label": row["label"] or None,
        "probabilities": {l: _finite(row[f"p_{l}"]) for l in labels},
        **({"error": row["error"]} if row.get("error") else {}),
    }


class _Service:
    """What the endpoints share: the model, the limits, the inference pool and the metrics."""

    def __init__(self, recognizer, settings: Settings, model_dir=None):
        self.rec = recognizer
        self.settings = settings
        self.model_dir = model_dir
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(max_workers=settings.inference_threads, thread_name_prefix="serkit-infer")
        self.started = time.time()

    def check_key(self, key: str | None) -> bool:
        keys = self.settings.api_keys
        if not keys:
            return True
        if not key:
            return False
        # compare with every key in constant time: the answer's timing must not reveal a prefix
        ok = False
        for k in keys:
            ok |= hmac.compare_digest(key.encode(), k.encode())
        return ok

    async def run(self, fn, *args):
        """Run ``fn(*args)`` in the inference pool; 503 when too many jobs are already waiting."""
        m = self.metrics
        if m.in_flight >= self.settings.max_pending:
            raise _ClientError(
                503,
                f"the server is busy: {m.in_flight} inference jobs are queued (limit {self.settings.max_pending}, "
                "SERKIT_MAX_PENDING); retry in a second",
                {"Retry-After": "1"},
            )
        m.in_flight += 1  # only the event loop thread touches this counter
        try:
            t0 = time.perf_counter()
            result = await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
            m.observe_inference(time.perf_counter() - t0)
            return result
        finally:
            m.in_flight -= 1

    async def receive_upload(self, request):
        """Parse a multipart body with one audio file in field ``file``; returns ``(form, upload)``."""
        return await receive_upload(request, self.settings)

    def analyse(self, upload, mode: str, window: float = 4.0, hop: float = 2.0):
        """Blocking part (runs in the pool): copy the upload to a private temp file and predict.

        Returns ``(name, duration, table)``.
        """
        from ..audio import AUDIO_EXTENSIONS, info
        from ..windows import Grid

        name = display_name(upload.filename)
        suffix = Path(name).suffix.lower()
        # the extension only helps the decoder guess; the name itself never touches the file system
        suffix = suffix if suffix in AUDIO_EXTENSIONS else ""
        tmp = tempfile.mkdtemp(prefix="serkit-upload-")
        path = Path(tmp) / f"upload{suffix}"

        def client_text(msg: str) -> str:
            return msg.replace(str(path), name).replace(tmp, "")

        try:
            upload.file.seek(0)
            with open(path, "wb") as fh:
                shutil.copyfileobj(upload.file, fh, MB)
            try:
                header = info(path)
                if header.duration > self.settings.max_duration_s:
                    raise _ClientError(
                        413,
                        f"'{name}' is {header.duration:.1f} s long; the limit is {self.settings.max_duration_s:g} s "
                        "(SERKIT_MAX_DURATION_S); cut it into shorter files",
                    )
                if mode == "timeline":
                    n_windows = Grid(header.sampling_rate, window, hop).count(header.frames)
                    if n_windows > self.settings.max_windows:
                        raise _ClientError(
                            422,
                            f"window {window:g} s and hop {hop:g} s give {n_windows} windows over "
                            f"{header.duration:.1f} s; the limit is {self.settings.max_windows} (SERKIT_MAX_WINDOWS): "
                            "use a larger hop",
                        )
                    table = self.rec.timeline(path, window=window, hop=hop)
                else:
                    table = self.rec.predict_file(path)
            except AudioError as exc:
                raise _ClientError(422, client_text(str(exc))) from None
            return name, header.duration, table
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _one_row_table(row: dict):
    import pandas as pd

    return pd.DataFrame([row])


# -- the app ----------------------------------------------------------------------------------------
def create_app(recognizer, settings: Settings | None = None, *, model_dir=None):
    """Build the FastAPI application serving ``recognizer``.

    Parameters
    ----------
    recognizer : serkit.inference.Recognizer
    settings
        Limits and keys; default :meth:`Settings.from_env`.
    model_dir
        Shown by ``/v1/models`` (informational only).
    """
    _import_fastapi()
    from fastapi import Depends, FastAPI, Query, Request, WebSocket
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
    from fastapi.security import APIKeyHeader
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field
    from starlette.websockets import WebSocketDisconnect

    from .._version import __version__
    from ..streaming import PCM_FORMATS, SlidingWindow, decode_pcm
    from ..windows import LONG_HOP_S, LONG_WINDOW_S, StreamLimitError, StreamLimits

    settings = settings or Settings.from_env()
    svc = _Service(recognizer, settings, model_dir)
    labels = list(recognizer.labels)

    class ErrorResponse(BaseModel):
        detail: str = Field(description="What was wrong and how to fix it.")

    class PredictResponse(BaseModel):
        file: str = Field(description="The uploaded file's name (echoed; never used as a path).")
        label: str = Field(description="The most probable emotion.")
        probabilities: dict[str, float] = Field(description="Probability of every label (sums to 1).")
        duration: float = Field(description="Length of the audio in seconds.")

    class Window(BaseModel):
        start: float | None
        end: float | None
        label: str | None
        probabilities: dict[str, float | None]
        error: str | None = None

    class TimelineResponse(BaseModel):
        file: str
        duration: float
        window: float
        hop: float
        label: str = Field(description="The label of the mean probabilities over the windows with speech.")
        probabilities: dict[str, float] = Field(
            description="Mean probabilities over the windows with speech (silent windows have error 'silence')."
        )
        windows: list[Window]

    class ModelsResponse(BaseModel):
        labels: list[str]
        sampling_rate: int
        family: str | None
        recipe: dict[str, Any]
        metrics: dict[str, Any]
        trained_on: dict[str, Any]
        serkit_version: str | None
        created: str | None
        limits: dict[str, Any]

    class Health(BaseModel):
        status: str
        uptime_s: float
        labels: int

    errors = {
        code: {"model": ErrorResponse, "description": text}
        for code, text in {
            400: "Malformed multipart body or no file in field 'file'.",
            401: "Missing or wrong API key (when SERKIT_API_KEYS is set).",
            408: "The upload paused longer than SERKIT_BODY_TIMEOUT_S or took longer than SERKIT_UPLOAD_TIMEOUT_S.",
            413: "Upload larger than SERKIT_MAX_UPLOAD_MB or audio longer than SERKIT_MAX_DURATION_S.",
            415: "Request is not multipart/form-data, or the file part is not audio.",
            422: "The audio cannot be decoded, is empty, too short or silent, or a parameter is out of range.",
            503: "Too many inference jobs queued (SERKIT_MAX_PENDING); retry after the Retry-After seconds.",
        }.items()
    }
    upload_body = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": "wav, flac, ogg or mp3 (≤ SERKIT_MAX_UPLOAD_MB)",
                            }
                        },
                    },
                }
            },
        }
    }

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        from .accesslog import redact_logs

        redact_logs()  # after uvicorn configured its loggers: no api_key in the access log
        yield
        from ..runtime import kill_pools

        svc.pool.shutdown(wait=False, cancel_futures=True)
        kill_pools()  # feature worker processes never outlive the service

    app = FastAPI(
        lifespan=lifespan,
        title="serkit",
        version=__version__,
        description=(
            "Speech emotion recognition. Upload a clip to `/v1/predict`, a long recording to `/v1/timeline`, "
            "or stream PCM over the `/v1/stream` WebSocket. When `SERKIT_API_KEYS` is set, send a key in "
            "the `X-API-Key` header (WebSocket: `api_key` query parameter)."
        ),
        docs_url=None,  # served below from local assets instead of a CDN
        redoc_url=None,
    )
    app.state.service = svc
    _describe_auth_as_configured(app, settings)
    app.add_middleware(MetricsMiddleware, metrics=svc.metrics)
    api_key_header = APIKeyHeader(
        name="X-API-Key", auto_error=False, description="Needed when the server sets SERKIT_API_KEYS."
    )

    def require_key(request: Request, key: str | None = Depends(api_key_header)):
        if not key:
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not svc.check_key(key):
            raise _ClientError(
                401,
                "missing or wrong API key; send it in the X-API-Key header (or Authorization: Bearer KEY)",
                {"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(_ClientError)
    async def _client_error(request, exc: _ClientError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(SerkitError)
    async def _serkit_error(request, exc: SerkitError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid_parameter(request, exc: RequestValidationError):
        # one error shape everywhere (the OpenAPI schema's ErrorResponse): detail is a sentence
        return JSONResponse({"detail": _validation_message(exc.errors())}, status_code=422)

    # -- pages and docs -------------------------------------------------------------------------------
    page_headers = {
        # everything the page needs comes from this server; nothing may load from elsewhere
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", headers=page_headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    swagger_dir = _swagger_assets()
    if swagger_dir is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger_dir), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        if swagger_dir is None:
            return HTMLResponse(
                "<!doctype html><title>serkit API</title><p>The interactive docs need the "
                "<code>swagger-ui-bundle-v2</code> package (<code>pip install 'serkit[serve]'</code>). "
                "The OpenAPI description is at <a href='/openapi.json'>/openapi.json</a>.</p>"
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="serkit API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    # -- service endpoints ----------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["service"], summary="Liveness and readiness")
    def healthz():
        return {"status": "ok", "uptime_s": round(time.time() - svc.started, 3), "labels": len(labels)}

    def require_metrics_key(request: Request, key: str | None = Depends(api_key_header)):
        if not settings.metrics_public:
            require_key(request, key)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["service"],
        dependencies=[Depends(require_metrics_key)],
        responses={401: errors[401]},
        summary="Prometheus metrics: requests, latency histograms, errors, inference queue "
        "(needs the API key when SERKIT_METRICS_PUBLIC=0)",
    )
    def metrics():
        return PlainTextResponse(svc.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        tags=["model"],
        dependencies=[Depends(require_key)],
        responses={401: errors[401]},
        summary="The loaded model: labels, recipe, scores, limits",
    )
    def models():
        meta = recognizer.metadata or {}
        recipe = meta.get("recipe") or {}
        return {
            "labels": labels,
            "sampling_rate": int(recognizer.sampling_rate),
            "family": meta.get("family"),
            "recipe": {k: recipe.get(k) for k in ("name", "description", "label_set", "protocol") if k in recipe},
            "metrics": meta.get("metrics") or {},
            "trained_on": meta.get("trained_on") or {},
            "serkit_version": meta.get("serkit_version"),
            "created": meta.get("created"),
            "limits": {
                "max_upload_mb": settings.max_upload_mb,
                "max_duration_s": settings.max_duration_s,
                "max_windows": settings.max_windows,
                "max_stream_s": settings.max_stream_s,
                "auth": bool(settings.api_keys),
            },
        }

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        dependencies=[Depends(require_key)],
        openapi_extra=upload_body,
        responses={c: errors[c] for c in (400, 401, 408, 413, 415, 422, 503)},
        summary="Emotion of one uploaded clip",
    )
    async def predict(
        request: Request,
        min_confidence: float | None = Query(
            None, ge=0.0, le=1.0, description="Label 'uncertain' when the top probability is below this."
        ),
    ):
        form, upload = await svc.receive_upload(request)
        try:
            name, duration, table = await svc.run(svc.analyse, upload, "predict")
        finally:
            await form.close()
        if min_confidence is not None:
            table = recognizer.abstain(table, min_confidence)
        row = _row_json(table.to_dict("records")[0], labels)
        return {"file": name, "label": row["label"], "probabilities": row["probabilities"], "duration": duration}

    @app.post(
        "/v1/timeline",
        response_model=TimelineResponse,
        tags=["predict"],
        dependencies=[Depends(require_key)],
        openapi_extra=upload_body,
        responses={c: errors[c] for c in (400, 401, 408, 413, 415, 422, 503)},
        summary="Emotion over time of a long recording, one result per window",
    )
    async def timeline(
        request: Request,
        window: float = Query(LONG_WINDOW_S, ge=0.5, le=60.0, description="Window length (s)."),
        hop: float = Query(LONG_HOP_S, ge=0.25, le=60.0, description="Step between windows (s)."),
        min_confidence: float | None = Query(
            None, ge=0.0, le=1.0, description="Label 'uncertain' when the top probability is below this."
        ),
    ):
        form, upload = await svc.receive_upload(request)
        try:
            name, duration, table = await svc.run(svc.analyse, upload, "timeline", window, hop)
        finally:
            await form.close()
        if (table["error"] != "").all():
            raise _ClientError(422, f"'{name}' is silent: every window is silence; there is no speech to classify")
        # the summary `serkit predict` gives a long file (from the probabilities, before abstention)
        summary = recognizer.summarise(table)
        if min_confidence is not None:
            table = recognizer.abstain(table, min_confidence)
            summary = recognizer.abstain(_one_row_table(summary), min_confidence).to_dict("records")[0]
        rows = [_row_json(r, labels) for r in table.to_dict("records")]
        summary = _row_json(summary, labels)
        return {
            "file": name,
            "duration": duration,
            "window": window,
            "hop": hop,
            "label": summary["label"],
            "probabilities": summary["probabilities"],
            "windows": rows,
        }

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        """PCM in, per-window results out (documented in the module docstring of serkit.serve.app)."""
        q = ws.query_params
        key = ws.headers.get("x-api-key") or q.get("api_key")
        if not svc.check_key(key):  # refused in the handshake (HTTP 403), never upgraded first
            return await ws.close(code=1008, reason="missing or wrong API key; pass the api_key query parameter")
        await ws.accept()

        async def fail(code: int, message: str):
            await ws.send_json({"type": "error", "message": message})
            await ws.close(code=code, reason=message[:120])

        try:
            rate = int(q.get("rate", "16000"))
            window = float(q.get("window", "2.0"))
            hop = float(q.get("hop", "1.0"))
            ema = float(q.get("ema", "1.0"))
            min_confidence = float(q["min_confidence"]) if "min_confidence" in q else None
        except ValueError:
            return await fail(
                1008, "rate, window, hop, ema and min_confidence must be numbers, e.g. ?rate=16000&window=2&hop=1"
            )
        fmt = q.get("format", "f32")
        if fmt not in PCM_FORMATS:
            return await fail(1008, f"format {fmt!r} is not supported; use one of {', '.join(PCM_FORMATS)}")
        if not (0.5 <= window <= 60 and 0.25 <= hop <= 60):
            return await fail(1008, f"window {window:g} s must be in 0.5..60 and hop {hop:g} s in 0.25..60")
        try:
            engine = SlidingWindow(
                recognizer,
                sampling_rate=rate,
                window=window,
                hop=hop,
                ema=ema,
                name="stream",
                min_confidence=min_confidence,
                limits=StreamLimits(
                    max_overlap=settings.stream_max_overlap,
                    max_windows_per_message=settings.stream_max_windows_per_message,
                    max_windows_per_s=settings.stream_max_windows_per_s,
                ),
            )
        except SerkitError as exc:
            return await fail(1008, str(exc))
        max_bytes = settings.max_chunk_kb * 1024
        await ws.send_json(
            {"type": "ready", "sampling_rate": rate, "format": fmt, "window": window, "hop": hop, "labels": labels}
        )
        svc.metrics.streams_open += 1

        async def send_rows(table):
            rows = table.to_dict("records")
            for r in rows:
                await ws.send_json({"type": "window", **_row_json(r, labels)})
            svc.metrics.add_stream_windows(len(rows))

        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data, text = message.get("bytes"), message.get("text")
                if data is not None:
                    if len(data) > max_bytes:
                        return await fail(
                            1009,
                            f"a chunk of {len(data)} bytes is larger than {settings.max_chunk_kb} KB "
                            "(SERKIT_MAX_CHUNK_KB); send smaller chunks",
                        )
                    try:
                        signal = decode_pcm(data, fmt)
                    except SerkitError as exc:
                        return await fail(1007, str(exc))
                    if engine.duration + len(signal) / rate > settings.max_stream_s:
                        return await fail(
                            1008,
                            f"the stream reached {settings.max_stream_s:g} s (SERKIT_MAX_STREAM_S); open a new one",
                        )
                    try:
                        table = await svc.run(engine.feed, signal)
                    except _ClientError as exc:
                        return await fail(1013, exc.message)
                    except StreamLimitError as exc:  # nothing was classified
                        return await fail(1009 if exc.too_big else 1008, str(exc))
                    await send_rows(table)
                elif text is not None:
                    try:
                        command = json.loads(text).get("type")
                    except (ValueError, AttributeError):
                        command = None
                    if command != "end":
                        return await fail(1003, 'text messages must be {"type": "end"}; send audio as binary PCM')
                    duration = engine.duration
                    await send_rows(await svc.run(engine.flush))
                    await ws.send_json({"type": "end", "duration": duration})
                    return await ws.close(code=1000)
        except WebSocketDisconnect:
            return
        finally:
            svc.metrics.streams_open -= 1

    return app


def _describe_auth_as_configured(app, settings: Settings) -> None:
    """Make the OpenAPI description say what the server really requires: the API-key header only
    when ``SERKIT_API_KEYS`` is set, and on ``/metrics`` only with ``SERKIT_METRICS_PUBLIC=0``."""
    build = app.openapi

    def openapi():
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            needs_key = bool(settings.api_keys) and (path != "/metrics" or not settings.metrics_public)
            for op in operations.values():
                if isinstance(op, dict) and not needs_key:
                    op.pop("security", None)
                    op.get("responses", {}).pop("401", None)
        if not settings.api_keys:
            schema.get("components", {}).pop("securitySchemes", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _validation_message(errors) -> str:
    """FastAPI's list of parameter errors as one sentence naming each parameter, value and rule."""
    parts = []
    for e in list(errors)[:5]:
        loc = [str(x) for x in e.get("loc", ())]
        where = f"{loc[0]} parameter '{'.'.join(loc[1:])}'" if len(loc) > 1 else "'.'".join(loc) or "request"
        value = e.get("input")
        shown = f" = {value!r}" if isinstance(value, (str, int, float)) and len(repr(value)) < 60 else ""
        parts.append(f"{where}{shown}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) + " (see /docs for the allowed values)"


def _swagger_assets() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    p = Path(swagger_ui_bundle.swagger_ui_path)
    return p if (p / "swagger-ui-bundle.js").exists() else None

"""Request counters and latency histograms of the HTTP service, in the Prometheus text format."""

from __future__ import annotations

import threading
import time

__all__ = ["Metrics", "MetricsMiddleware"]


class Metrics:
    """Request counters and latency histograms, rendered in the Prometheus text format.

    Routes are recorded by their template (``/v1/predict``), never the raw path, so a scanner
    probing random URLs cannot grow the label set without bound (they all count as ``other``).
    """

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.errors: dict[tuple, int] = {}
        self.latency: dict[str, list] = {}
        self.inference: list = [[0] * len(self.BUCKETS), 0.0, 0]
        self.stream_windows = 0
        self.streams_open = 0
        self.in_flight = 0

    @staticmethod
    def _add(hist, seconds, buckets):
        for i, b in enumerate(buckets):
            if seconds <= b:
                hist[0][i] += 1
        hist[1] += seconds
        hist[2] += 1

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            if status >= 400:
                ekey = (route, str(status))
                self.errors[ekey] = self.errors.get(ekey, 0) + 1
            hist = self.latency.setdefault(route, [[0] * len(self.BUCKETS), 0.0, 0])
            self._add(hist, seconds, self.BUCKETS)

    def observe_inference(self, seconds: float) -> None:
        with self._lock:
            self._add(self.inference, seconds, self.BUCKETS)

    def add_stream_windows(self, n: int) -> None:
        with self._lock:
            self.stream_windows += n

    def render(self) -> str:
        def labels(**kv):
            return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in kv.items()) + "}"

        def hist_lines(name, hist, **kv):
            out = []
            for b, c in zip(self.BUCKETS, hist[0]):
                out.append(f"{name}_bucket{labels(**kv, le=repr(b))} {c}")
            out.append(f"{name}_bucket{labels(**kv, le='+Inf')} {hist[2]}")
            out.append(f"{name}_sum{labels(**kv) if kv else ''} {hist[1]:.6f}")
            out.append(f"{name}_count{labels(**kv) if kv else ''} {hist[2]}")
            return out

        with self._lock:
            lines = [
                "# HELP serkit_http_requests_total HTTP requests by method, route and status.",
                "# TYPE serkit_http_requests_total counter",
            ]
            lines += [
                f"serkit_http_requests_total{labels(method=m, route=r, status=s)} {n}"
                for (m, r, s), n in sorted(self.requests.items())
            ]
            lines += [
                "# HELP serkit_http_errors_total HTTP responses with status >= 400 by route and status.",
                "# TYPE serkit_http_errors_total counter",
            ]
            lines += [
                f"serkit_http_errors_total{labels(route=r, status=s)} {n}" for (r, s), n in sorted(self.errors.items())
            ]
            lines += [
                "# HELP serkit_http_request_duration_seconds Time from request start to response end.",
                "# TYPE serkit_http_request_duration_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                lines += hist_lines("serkit_http_request_duration_seconds", hist, route=route)
            lines += [
                "# HELP serkit_inference_duration_seconds Time one inference job ran in the pool.",
                "# TYPE serkit_inference_duration_seconds histogram",
            ]
            lines += hist_lines("serkit_inference_duration_seconds", self.inference)
            lines += [
                "# HELP serkit_inference_in_flight Inference jobs waiting or running.",
                "# TYPE serkit_inference_in_flight gauge",
                f"serkit_inference_in_flight {self.in_flight}",
                "# HELP serkit_stream_windows_total Windows classified over WebSocket streams.",
                "# TYPE serkit_stream_windows_total counter",
                f"serkit_stream_windows_total {self.stream_windows}",
                "# HELP serkit_streams_open Open WebSocket streams.",
                "# TYPE serkit_streams_open gauge",
                f"serkit_streams_open {self.streams_open}",
            ]
        return "\n".join(lines) + "\n"


def _escape(v) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering) that times every HTTP request."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.observe(scope.get("method", "?"), path, status["code"], time.perf_counter() - start)

"""Prometheus metrics: request counts and latencies per route template (not per raw path)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class MeasureRequests:
    """A plain ASGI middleware: counts and times each HTTP request once its response is sent.

    Not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` runs every request through
    a task group and memory streams, which cost as much as a small route does.
    """

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            # The router records the matched route in the scope: label by its template, not the path.
            template = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.latency.labels(method, template).observe(time.perf_counter() - start)
            self.requests.labels(method, template, str(status)).inc()


def install(app: FastAPI) -> None:
    # A registry per app keeps several apps in one process (tests, two-region runs) independent.
    registry = CollectorRegistry()
    requests = Counter(
        "eseal_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "eseal_http_request_seconds", "HTTP request latency", ["method", "route"], registry=registry
    )
    app.state.metrics_registry = registry
    app.add_middleware(MeasureRequests, requests=requests, latency=latency)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

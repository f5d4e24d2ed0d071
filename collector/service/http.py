"""The health and metrics HTTP server (aiohttp), bound to 127.0.0.1 by default.

``GET /healthz``: the :class:`~collector.service.health.HealthReport` as JSON, status 200 when
healthy and 503 when not. ``GET /metrics``: Prometheus text exposition. Anything else: 404.

    server = HealthServer(health, metrics, host="127.0.0.1", port=9108)
    host, port = await server.start()   # port=0 picks a free port
    ...
    await server.stop()
"""

from __future__ import annotations

import json
import socket

import structlog
from aiohttp import web

from collector.service.health import HealthState
from collector.service.metrics import CONTENT_TYPE, Metrics

log = structlog.get_logger(__name__)


class HealthServer:
    def __init__(
        self,
        health: HealthState,
        metrics: Metrics | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        return app

    async def start(self) -> tuple[str, int]:
        """Bind and serve; returns the bound (host, port). Raises ``OSError`` if the port is taken."""
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        sock = socket.create_server(infos[0][4][:2], family=infos[0][0], reuse_port=False)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            raise
        self._runner = runner
        bound = sock.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        log.info("http_listening", host=self.address[0], port=self.address[1])
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self.address is None:
            raise RuntimeError("server not started")
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    async def _healthz(self, request: web.Request) -> web.Response:
        report = self.health.evaluate()
        return web.Response(
            text=json.dumps(report.to_json(), indent=1),
            status=200 if report.healthy else 503,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.metrics is None:
            return web.Response(status=404, text="metrics disabled\n")
        resp = web.Response(body=self.metrics.render(), headers={"Cache-Control": "no-store"})
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="btse-collector: see /healthz and /metrics\n")

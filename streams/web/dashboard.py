"""Operator routes on the node's HTTP server: the live dashboard, its event stream, and `/metrics`.

Shared by `affectstream serve` (next to the call page) and `affectstream run --http PORT` (alone), so
both expose the same pages under the same rules as the call page: the HTML is public (it holds no data),
every data route needs the bearer token when the server has one (`Authorization: Bearer` or `?token=`,
since `EventSource` cannot send headers). Updates go to the browser as server-sent events from the
engine's live hub: one `snapshot` on connect, then `window`, `state`, `reasoning`, `event`, `status` and
`remove` messages; a comment line every few seconds keeps proxies from closing an idle stream.
This module needs only aiohttp (no aiortc), so `run --http` works without the WebRTC stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from affectstream.streams.sinks.live import HubFull, LiveHub
from affectstream.streams.web.security import bearer_from, token_ok
from aiohttp import web

log = logging.getLogger("affectstream.web")

STATIC = Path(__file__).parent / "static"


class OpsRoutes:
    """`/dashboard`, `/dashboard/events`, `/dashboard/snapshot` and `/metrics` over one `LiveHub`."""

    def __init__(
        self,
        hub: LiveHub,
        token: str | None,
        *,
        version: str = "",
        keepalive_s: float = 10.0,
        metrics: bool = True,
    ) -> None:
        self.hub = hub
        self.token = token
        self.version = version
        self.keepalive_s = keepalive_s
        self.metrics = metrics
        self._closing = asyncio.Event()
        self.scrapes = 0

    def add_to(self, app: web.Application) -> None:
        if not any(getattr(r.resource, "canonical", None) == "/favicon.ico" for r in app.router.routes()):
            app.router.add_get("/favicon.ico", self._no_content)
        app.router.add_get("/dashboard", self._page)
        app.router.add_get("/dashboard/events", self._events)
        app.router.add_get("/dashboard/snapshot", self._snapshot)
        if self.metrics:
            app.router.add_get("/metrics", self._metrics)
        if not any(r.resource and r.resource.canonical == "/static" for r in app.router.routes()):
            app.router.add_static("/static/", STATIC, show_index=False)
        app.on_shutdown.append(self._on_shutdown)

    def _authorized(self, request: web.Request) -> bool:
        presented = bearer_from(request.headers.get("Authorization"), request.query.get("token"))
        return token_ok(self.token, presented)

    async def _on_shutdown(self, app: web.Application) -> None:
        # open event streams would otherwise hold the server's shutdown for its whole grace period
        self._closing.set()
        self.hub.broadcast("bye", {"reason": "server shutting down"})

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "dashboard.html", headers={"Cache-Control": "no-store"})

    async def _snapshot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return web.json_response(self.hub.snapshot())

    async def _metrics(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            from affectstream.streams.web.prometheus import CONTENT_TYPE, render_metrics

            body = render_metrics(self.hub, self.version)
        except ImportError as e:
            return web.Response(
                status=501, text=f"{e.name} is not installed: pip install 'affectstream[metrics]'\n"
            )
        self.scrapes += 1
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        try:
            sub = self.hub.subscribe()
        except HubFull as e:
            return web.json_response({"error": str(e)}, status=503)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
            }
        )
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 2000\n\n")
            while not self._closing.is_set():
                msg = await sub.get(timeout=self.keepalive_s)
                if msg is None:
                    await resp.write(b": keep-alive\n\n")
                    continue
                event, data = msg
                body = json.dumps(data, separators=(",", ":"), allow_nan=False)
                await resp.write(f"event: {event}\ndata: {body}\n\n".encode())
                if event == "bye":
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except Exception as e:  # a viewer going away mid-write must never reach the engine
            log.debug("dashboard stream ended: %s", e)
        finally:
            sub.close()
        with contextlib.suppress(Exception):
            await resp.write_eof()
        return resp


class OpsServer:
    """The dashboard and /metrics alone, for `affectstream run --http PORT` (no WebRTC)."""

    def __init__(self, hub: LiveHub, host: str, port: int, token: str | None, *, version: str = "") -> None:
        self.routes = OpsRoutes(hub, token, version=version)
        self.host, self.port, self.token = host, port, token
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self._root)
        self.routes.add_to(app)
        return app

    async def _root(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard" + (f"?{request.query_string}" if request.query_string else ""))

    async def start(self) -> None:
        """Bind and serve; raises OSError when the port cannot be used."""
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.port

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/dashboard" + (f"?token={self.token}" if self.token else "")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

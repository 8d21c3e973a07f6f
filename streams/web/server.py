"""`affectstream serve`: the page at `/`, SDP signaling at `POST /offer`, one aiortc peer per caller.

Each caller becomes one stream of the same `Pipeline` that `affectstream run` uses (same windower,
analyzer, smoother, MQTT sink, reasoning slow path); its results also go back to it on a data channel.
A server has no sources until someone calls, so the engine runs with `until_stopped=True`; a caller's
stream is removed from the engine's table when the call ends, so ids can be reused.

Signaling is one request: the page gathers ICE candidates first (no trickle), posts
`{"sdp", "type": "offer", "stream"?}` and gets `{"sdp", "type": "answer", "stream"}` back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affectstream.streams.web.datachannel import DataChannelSink
from affectstream.streams.web.ice import (
    browser_ice_servers,
    ice_configuration,
    is_loopback_host,
    restrict_to_loopback,
)
from affectstream.streams.web.peer import Peer
from affectstream.streams.web.security import (
    BODY_TIMEOUT_S,
    MAX_BODY_BYTES,
    PeerSlots,
    bearer_from,
    token_ok,
)
from aiohttp import ClientPayloadError, web

log = logging.getLogger("affectstream.web")

STATIC = Path(__file__).parent / "static"
_STREAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # required bearer token (None: open, allowed on loopback only)
    max_peers: int = 4
    ice_servers: list[str] = field(default_factory=list)
    connect_timeout: float = 30.0
    media_timeout: float = 10.0
    max_body: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_S  # a client that trickles its offer is cut off after this
    max_video_fps: float = 15.0
    start_bitrate_kbps: int = 1000  # x-google-start-bitrate: skip Chromium's 480x360 ramp-up
    tls_cert: Path | None = None  # https: browsers allow getUserMedia only on https or localhost
    tls_key: Path | None = None
    # responsible use (settings `privacy`): the notice the page shows, and whether an offer must carry
    # `"consent": true` (the page sends it once the caller ticked the box)
    notice: str | None = None
    consent: bool = False


def with_start_bitrate(sdp: str, kbps: int) -> str:
    """Add `x-google-start-bitrate` to every video codec's fmtp line of an answer.

    Chromium starts sending at a low resolution while its bandwidth estimate ramps up (~20 s); the
    start bitrate in the answer lets it begin near the target, so the first windows see a usable face.
    """
    lines = sdp.splitlines()
    section = ""
    video_pts: list[str] = []
    for ln in lines:
        if ln.startswith("m="):
            section = ln[2:].split(" ", 1)[0]
        elif section == "video" and ln.startswith("a=rtpmap:"):
            pt, _, codec = ln[9:].partition(" ")
            if codec.split("/")[0].upper() in ("VP8", "VP9", "H264", "AV1"):
                video_pts.append(pt)
    if not video_pts:
        return sdp
    param = f"x-google-start-bitrate={int(kbps)}"
    out: list[str] = []
    have_fmtp = {pt: False for pt in video_pts}
    for ln in lines:
        if ln.startswith("a=fmtp:"):
            pt = ln[7:].split(" ", 1)[0]
            if pt in have_fmtp:
                have_fmtp[pt] = True
                ln = f"{ln};{param}"
        out.append(ln)
    final: list[str] = []
    for ln in out:
        final.append(ln)
        if ln.startswith("a=rtpmap:"):
            pt = ln[9:].split(" ", 1)[0]
            if pt in have_fmtp and not have_fmtp[pt]:
                final.append(f"a=fmtp:{pt} {param}")
    return "\r\n".join(final) + "\r\n"


def _short(value: Any, limit: int = 40) -> str:
    """A bounded repr for error messages: the client's value may be 64 KiB of nested lists."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class WebRtcServer:
    """The aiohttp app plus the set of live peers, bound to one running `Pipeline`."""

    def __init__(self, config: ServerConfig, engine: Any, channels: DataChannelSink, ops: Any = None) -> None:
        self.config = config
        self.ops = ops  # streams/web/dashboard.OpsRoutes: the live dashboard and /metrics on the same port
        self.engine = engine
        self.channels = channels
        self.slots = PeerSlots(config.max_peers)
        self.peers: dict[str, Peer] = {}
        self.rtc_config = ice_configuration(config.ice_servers)
        self.counters = {"offers": 0, "answered": 0, "rejected": 0, "closed": 0}
        self.close_reasons: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._engine_task: asyncio.Task[Any] | None = None

    # ------------------------------------------------------------------ app
    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body)
        app.router.add_get("/", self._index)
        app.router.add_get("/config", self._client_config)
        app.router.add_get("/health", self._health)
        app.router.add_get("/favicon.ico", self._no_content)
        app.router.add_post("/offer", self._offer)
        app.router.add_static("/static/", STATIC, show_index=False)
        if self.ops is not None:
            self.ops.add_to(app)
        return app

    def _authorized(self, request: web.Request) -> bool:
        presented = bearer_from(request.headers.get("Authorization"), request.query.get("token"))
        return token_ok(self.config.token, presented)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _client_config(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token")
        privacy = {"notice": self.config.notice, "consent": self.config.consent}
        return web.json_response(
            {"iceServers": browser_ice_servers(self.config.ice_servers), "privacy": privacy}
        )

    async def _health(self, request: web.Request) -> web.Response:
        """Liveness plus per-call counters (stream ids are private: token required when one is set)."""
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token")
        calls = {
            sid: {
                "connection": p.pc.connectionState,
                "kinds": sorted(p.source.kinds),
                "seconds": round(time.monotonic() - p.created, 1),
                **p.source.counters(),
            }
            for sid, p in self.peers.items()
        }
        return web.json_response(
            {
                "peers": len(self.peers),
                "max_peers": self.config.max_peers,
                **self.counters,
                "channels": self.channels.stats(),
                "calls": calls,
            }
        )

    async def _offer(self, request: web.Request) -> web.Response:
        self.counters["offers"] += 1
        resp = await self._offer_inner(request)
        if resp.status >= 400:
            self.counters["rejected"] += 1
        return resp

    async def _offer_inner(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token")
        try:
            raw = await asyncio.wait_for(request.read(), self.config.body_timeout)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request body larger than {self.config.max_body} bytes")
        except asyncio.TimeoutError:
            log.info(
                "offer from %s: body not received within %.0f s; dropped",
                request.remote,
                self.config.body_timeout,
            )
            return _error(408, f"request body not received within {self.config.body_timeout:g} s")
        except (ConnectionError, ClientPayloadError, asyncio.IncompleteReadError) as e:
            # the caller went away mid-body (closed tab, dropped link): one line, not a traceback
            log.info("offer from %s abandoned mid-body (%s)", request.remote, e or type(e).__name__)
            return _error(400, "request body incomplete")
        try:
            body = json.loads(raw)
        except RecursionError:
            return _error(400, "body is nested too deeply to be an offer")
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'body is not JSON: expected {"sdp": ..., "type": "offer"}')
        if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) or not body["sdp"].strip():
            return _error(400, "body must be a JSON object with a non-empty string 'sdp'")
        if body.get("type", "offer") != "offer":
            return _error(400, f"'type' must be 'offer', got {_short(body.get('type'))}")
        if self.config.consent and body.get("consent") is not True:
            return _error(403, "the caller has not agreed to the emotion-analysis notice (consent required)")
        sid = body.get("stream") or f"call-{uuid.uuid4().hex[:8]}"
        if not isinstance(sid, str) or not _STREAM_ID.match(sid):
            return _error(400, "'stream' must be 1-64 characters from A-Z a-z 0-9 _ . -")
        if sid in self.peers or sid in self.engine.streams:
            return _error(409, f"stream {sid!r} is already in a call")
        if not self.slots.acquire(sid):
            return _error(503, f"too many concurrent calls (max {self.config.max_peers}); try later")
        peer = Peer(
            sid,
            configuration=self.rtc_config,
            connect_timeout=self.config.connect_timeout,
            media_timeout=self.config.media_timeout,
            max_video_fps=self.config.max_video_fps,
            on_channel=self._channel_open,
            on_closed=self._peer_closed,
        )
        self.peers[sid] = peer
        peer.start_watchdog()  # from here on the peer is torn down by itself if the caller goes away
        try:
            answer = await peer.answer(body["sdp"])
        except asyncio.CancelledError:
            await peer.close("signaling request cancelled")
            raise
        except Exception as e:  # aiortc raises ValueError and friends on SDP it cannot use
            await peer.close(f"bad offer: {e}")
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            return _error(400, f"unusable SDP offer: {msg}")
        peer.pump = await self.engine.add_source(peer.source, live=True)
        self.counters["answered"] += 1
        sdp = with_start_bitrate(answer.sdp, self.config.start_bitrate_kbps)
        log.info("call %s started (%s)", sid, ", ".join(sorted(peer.source.kinds)))
        return web.json_response({"sdp": sdp, "type": answer.type, "stream": sid})

    def _channel_open(self, peer: Peer, channel: Any) -> None:
        if peer.close_reason is None:
            self.channels.register(peer.stream_id, channel, peer.source.t0_unix)

    async def _peer_closed(self, peer: Peer, reason: str) -> None:
        self.channels.unregister(peer.stream_id)
        self.counters["closed"] += 1
        self.close_reasons.append(f"{peer.stream_id}: {reason}")
        del self.close_reasons[:-100]
        if peer.pump is not None:
            # the engine flushes the stream's last windows and closes its event; then forget it so the
            # id can be reused and the table does not grow with every call ever made
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(peer.pump), 10)
            for _ in range(500):  # its last windows are analysed within a few batches
                if self.engine.remove_stream(peer.stream_id) or peer.stream_id not in self.engine.streams:
                    break
                await asyncio.sleep(0.02)
        self.peers.pop(peer.stream_id, None)
        self.slots.release(peer.stream_id)

    # ------------------------------------------------------------------ lifecycle
    async def start_engine(self) -> None:
        """Run the engine until `close()`; callers are attached and removed as they come and go."""
        self._engine_task = asyncio.create_task(self.engine.run([], until_stopped=True), name="engine")
        await asyncio.sleep(0)
        if self._engine_task.done():
            await self._engine_task  # raises what went wrong
            raise RuntimeError("engine ended before serving")

    async def start(self) -> None:
        inline = getattr(self.engine, "_inline_reasoning", None)  # r1-omni reasons in the same pass
        reasoning = self.engine.slow_path is not None or inline is not None
        self.channels.hello_extra = {"profile": self.engine.settings.profile, "reasoning": reasoning}
        if is_loopback_host(self.config.host):
            restrict_to_loopback()
        await self.start_engine()
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=self._ssl())
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port

    def _ssl(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.config.tls_cert), str(self.config.tls_key or self.config.tls_cert))
        return ctx

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if self.config.tls_cert is not None else "http"
        base = f"{scheme}://{shown}:{self.port}/"
        return base + (f"?token={self.config.token}" if self.config.token else "")

    async def close(self) -> None:
        """Hang up every caller, stop the HTTP server, then let the engine flush and close its sinks."""
        for peer in list(self.peers.values()):
            await peer.close("server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.engine.stop()
        if self._engine_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._engine_task, 30)

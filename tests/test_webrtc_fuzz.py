"""Fuzz the HTTP signalling endpoint (`POST /offer`, hypothesis) and pin the hardening it needed.

Whatever a client sends — random bytes, any JSON value, offers with random fields and headers, very
deeply nested JSON — the answer is a 4xx with a JSON error (never a 5xx), nothing is left behind, and
the server keeps serving. Found by probing as an operator would, and fixed: deeply nested JSON gave a
500 with a RecursionError, a client abandoning its POST mid-body logged a 25-line traceback, and a
client trickling its body was never timed out.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_webrtc import webrtc_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BODY_TIMEOUT_S = 1.0
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class ServerThread:
    """A WebRtcServer running in its own event loop thread, so sync hypothesis tests can call it."""

    def __init__(self, analyzer: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.srv: Any = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(analyzer),))

    async def _main(self, analyzer: Any) -> None:
        self._stop = asyncio.Event()
        try:
            async with webrtc_server(analyzer, body_timeout=BODY_TIMEOUT_S, max_peers=2) as srv:
                self.srv = srv
                self._ready.set()
                await self._stop.wait()
        finally:
            self._ready.set()  # a server that failed to start fails the test now, not after a timeout
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:  # connections the fuzz left open (e.g. the slow-body one)
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(120) and self.srv is not None, "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self.loop.close()

    @property
    def port(self) -> int:
        return int(self.srv.server.port)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(
                "POST", "/offer", body=body, headers={"Content-Type": "application/json", **(headers or {})}
            )
            r = c.getresponse()
            raw = r.read()
        finally:
            c.close()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, {"raw": raw[:200].decode(errors="replace")}

    def health(self) -> dict[str, Any]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", "/health")
            return json.loads(c.getresponse().read())
        finally:
            c.close()


@pytest.fixture(scope="module")
def server(lite_analyzer: Any) -> Iterator[ServerThread]:
    with ServerThread(lite_analyzer) as s:
        yield s


def _refused(s: ServerThread, body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, out = s.post(body, headers)
    assert 400 <= status < 500, (status, out, body[:80])
    assert isinstance(out.get("error"), str) and out["error"], out
    return out


# --------------------------------------------------------------------------- the defects, one test each
def test_deeply_nested_json_is_400_not_500(server: ServerThread) -> None:
    for depth in (1_000, 20_000, 32_000):
        out = _refused(server, b"[" * depth + b"]" * depth)
        assert "nested" in out["error"] or "must be a JSON object" in out["error"]
    out = _refused(server, b'{"sdp": "v=0", "type": ' + b"[" * 30_000 + b"]" * 30_000 + b"}")
    assert len(out["error"]) < 200


def _abandon(port: int, declared: int, sent: bytes, hold: float = 0.0) -> bytes:
    s = socket.create_connection(("127.0.0.1", port))
    try:
        s.sendall(
            b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
            + sent
        )
        if not hold:
            return b""
        s.settimeout(hold)
        try:
            return s.recv(4096)
        except TimeoutError:
            return b""
    finally:
        s.close()


def test_abandoned_post_is_one_log_line(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    before = server.health()["rejected"]
    for _ in range(3):
        _abandon(server.port, 2000, b'{"sdp": "v=0\\r\\no=- 1 1 IN IP4 127.0.0.1')
    deadline = time.monotonic() + 10
    while server.health()["rejected"] < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.health()["rejected"] == before + 3
    ours = [r for r in caplog.records if "abandoned mid-body" in r.getMessage()]
    assert len(ours) == 3
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in ours)
    assert not [r for r in caplog.records if r.name == "aiohttp.server"], "aiohttp logged a traceback"


def test_slow_body_is_timed_out(server: ServerThread) -> None:
    t0 = time.monotonic()
    reply = _abandon(server.port, 3000, b'{"sdp": ', hold=BODY_TIMEOUT_S + 10)
    took = time.monotonic() - t0
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert BODY_TIMEOUT_S - 0.1 <= took < BODY_TIMEOUT_S + 5


# --------------------------------------------------------------------------- fuzz
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
sdp_like = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                         "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:111 opus/48000/2", "c=IN IP4 0.0.0.0",
                         "a=fingerprint:sha-256 00", "a=ice-ufrag:x", "a=ice-pwd:y", "a=setup:actpass", "a=mid:0",
                         "a=group:BUNDLE 0", "a=sendrecv", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"]),
        max_size=20,
    ).map(lambda ls: "\r\n".join(ls) + "\r\n"),
)  # fmt: skip
offers = st.fixed_dictionaries(
    {"sdp": sdp_like},
    optional={
        "type": st.one_of(st.just("offer"), st.text(max_size=10), json_values),
        "stream": st.one_of(
            st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True), st.text(max_size=80), json_values
        ),
        "extra": json_values,
    },
)
headers = st.dictionaries(
    st.sampled_from(["Authorization", "Content-Type", "X-Forwarded-For", "Accept"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    max_size=3,
)


@FUZZ
@given(body=st.binary(max_size=2048))
def test_fuzz_random_bytes(server: ServerThread, body: bytes) -> None:
    _refused(server, body)


@FUZZ
@given(value=json_values)
def test_fuzz_any_json_value(server: ServerThread, value: Any) -> None:
    _refused(server, json.dumps(value).encode())


@FUZZ
@given(offer=offers, hdrs=headers)
def test_fuzz_offers_and_headers(server: ServerThread, offer: dict[str, Any], hdrs: dict[str, str]) -> None:
    status, out = server.post(json.dumps(offer).encode(), hdrs)
    assert status < 500, (status, out)
    if status >= 400:
        assert isinstance(out.get("error"), str)


def test_server_still_serves_after_the_fuzz(server: ServerThread) -> None:
    h = server.health()
    assert h["peers"] <= h["answered"]  # nothing half-set-up is left behind
    assert h["rejected"] >= 100
    assert len(server.srv.engine.streams) == h["peers"]

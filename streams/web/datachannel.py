"""Results back to each caller on its own data channel.

The engine hands every sink every message; this sink keeps a map stream id → data channel and sends a
caller only its own stream's `window`, `state`, `reasoning` and `events` payloads (the same JSON as the
MQTT topics, so one parser serves both). A caller that reads slowly must not grow the server's memory:
when a channel already has `max_buffered` bytes queued, new messages for it are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from affectstream.engine.types import ReasoningResult, WindowResult
from affectstream.streams.sinks.base import Sink

log = logging.getLogger("affectstream.web")

HELLO_SCHEMA = "affectstream.webrtc.hello/1"


class Channel(Protocol):
    """What we need of aiortc's RTCDataChannel (so tests can read what was sent)."""

    readyState: str
    bufferedAmount: int

    def send(self, data: str) -> None: ...


@dataclass
class ChannelStats:
    sent: int = 0
    dropped: int = 0  # channel not open yet/any more, or too much already buffered
    errors: int = 0


class DataChannelSink(Sink):
    """Routes each stream's results to the data channel registered for it."""

    def __init__(self, max_buffered: int = 1 << 20) -> None:
        self.max_buffered = max_buffered
        self.hello_extra: dict[str, Any] = {}  # server facts for the page (profile, reasoning on/off)
        self._channels: dict[str, Channel] = {}
        self.totals = ChannelStats()

    def register(self, stream: str, channel: Channel, t0_unix: float) -> None:
        """Attach a caller's channel; sends a `hello` naming the stream and its clock origin.

        `t0_unix` is the wall-clock time of stream time 0, so the caller can turn `window.end` into
        "how long after I captured this did the label arrive" without trusting any other clock.
        """
        self._channels[stream] = channel
        hello = {"schema": HELLO_SCHEMA, "stream": stream, "t0_unix": round(t0_unix, 6), **self.hello_extra}
        self._send(stream, hello)

    def unregister(self, stream: str) -> None:
        self._channels.pop(stream, None)

    def channels(self) -> int:
        return len(self._channels)

    def _send(self, stream: str | None, payload: dict[str, Any]) -> None:
        if stream is None:
            return
        ch = self._channels.get(stream)
        if ch is None:
            return
        if ch.readyState != "open" or ch.bufferedAmount > self.max_buffered:
            self.totals.dropped += 1
            return
        try:
            ch.send(json.dumps(payload, separators=(",", ":"), allow_nan=False))
        except Exception as e:  # a channel closing under us: count, never raise into the engine
            self.totals.errors += 1
            log.debug("data channel send for %s failed: %s", stream, e)
            return
        self.totals.sent += 1

    async def publish_window(self, result: WindowResult) -> None:
        p = result.to_payload()
        p["sent_unix"] = round(time.time(), 6)
        self._send(result.stream, p)

    async def publish_state(self, stream: str, payload: dict[str, Any]) -> None:
        self._send(stream, payload)

    async def publish_reasoning(self, result: ReasoningResult) -> None:
        self._send(result.stream, result.to_payload())

    async def publish_event(self, payload: dict[str, Any]) -> None:
        self._send(payload.get("stream"), payload)

    def stats(self) -> dict[str, Any]:
        return {
            "channels": len(self._channels),
            "sent": self.totals.sent,
            "dropped": self.totals.dropped,
            "errors": self.totals.errors,
        }

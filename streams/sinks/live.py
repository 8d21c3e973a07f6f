"""The live view of a node: the latest state of every stream, pushed to dashboard subscribers.

Why a sink: the engine already hands every sink every result, so the dashboard sees exactly what MQTT
sees without the browser polling a broker. Everything here is bounded, because a node runs for weeks
with viewers coming and going: a fixed number of recent points per stream (the sparkline), of recent
events, of streams, and of subscribers; each subscriber has a small queue, and a viewer that reads too
slowly loses its oldest messages (counted) instead of growing the server's memory.

The latest `stats` message is kept too (the Prometheus endpoint renders it, so counters are never kept
twice), and two latency histograms are accumulated from the results (fast path per window, reasoning
per generation): the engine keeps only recent percentiles, and Prometheus needs cumulative buckets.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from affectstream.engine.types import ReasoningResult, WindowResult
from affectstream.streams.sinks.base import Sink

# seconds; the fast path is tens to hundreds of ms on CPU, reasoning seconds
FAST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REASONING_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


class HubFull(RuntimeError):
    """Too many dashboard viewers at once."""


@dataclass
class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics): O(buckets) memory for ever."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, v: float) -> None:
        self.n += 1
        self.total += v
        for i, b in enumerate(self.bounds):
            if v <= b:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, int]]:
        """[(le, cumulative count)], ending with +Inf."""
        return [
            *((repr(float(b)), c) for b, c in zip(self.bounds, self.counts, strict=True)),
            ("+Inf", self.n),
        ]


@dataclass
class LiveStream:
    stream: str
    points: deque[list[Any]]  # [t_unix, label, score, {class: score}] for the sparkline
    latest: dict[str, Any] | None = None
    smoothed: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    status: str = "running"
    windows: int = 0
    last_seen: float = 0.0

    def view(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "status": self.status,
            "windows": self.windows,
            "latest": self.latest,
            "smoothed": self.smoothed,
            "reasoning": self.reasoning,
            "points": list(self.points),
        }


class Subscription:
    """One viewer's bounded queue of `(event, data)`; `dropped` counts what it was too slow to take."""

    def __init__(self, hub: LiveHub, maxsize: int) -> None:
        self._hub = hub
        self._q: deque[tuple[str, dict[str, Any]]] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def push(self, event: str, data: dict[str, Any]) -> None:
        if len(self._q) == self._q.maxlen:
            self.dropped += 1
            self._hub.dropped += 1
        self._q.append((event, data))
        self._ready.set()

    async def get(self, timeout: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next message, or None after `timeout` seconds without one (time for a keep-alive)."""
        if not self._q:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self._q.popleft() if self._q else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._subs.discard(self)


class LiveHub(Sink):
    """Latest state per stream + recent history, fanned out to subscribers (the dashboard)."""

    def __init__(
        self,
        *,
        history_s: float = 300.0,
        max_points: int = 360,
        max_streams: int = 256,
        max_subscribers: int = 32,
        queue_max: int = 512,
        max_events: int = 50,
        forget_after_s: float = 30.0,
    ) -> None:
        self.history_s = history_s
        self.max_points = max_points
        self.max_streams = max_streams
        self.max_subscribers = max_subscribers
        self.queue_max = queue_max
        self.forget_after_s = forget_after_s
        self.streams: dict[str, LiveStream] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.latest_stats: dict[str, Any] | None = None
        self.fast_latency = Histogram(FAST_BUCKETS)
        self.reasoning_latency = Histogram(REASONING_BUCKETS)
        self.reasoning_total = 0
        self.reasoning_invalid = 0
        self.dropped = 0  # messages a slow viewer lost
        self.refused = 0  # viewers turned away (too many)
        self._subs: set[Subscription] = set()

    # ------------------------------------------------------------------ viewers
    def subscribe(self) -> Subscription:
        """A new viewer; its first message is the full `snapshot`. Raises `HubFull` beyond the cap."""
        if len(self._subs) >= self.max_subscribers:
            self.refused += 1
            raise HubFull(f"too many dashboard viewers (max {self.max_subscribers})")
        sub = Subscription(self, self.queue_max)
        self._subs.add(sub)
        sub.push("snapshot", self.snapshot())
        return sub

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def snapshot(self) -> dict[str, Any]:
        return {
            "ts": round(time.time(), 3),
            "node": (self.latest_stats or {}).get("node"),
            "streams": [s.view() for s in sorted(self.streams.values(), key=lambda s: s.stream)],
            "events": list(self.events),
        }

    def broadcast(self, event: str, data: dict[str, Any]) -> None:
        """Send to every viewer (bounded per viewer: the slowest lose their oldest messages)."""
        for sub in list(self._subs):
            sub.push(event, data)

    # ------------------------------------------------------------------ sink hooks
    def _stream(self, sid: str) -> LiveStream | None:
        st = self.streams.get(sid)
        if st is None:
            if len(self.streams) >= self.max_streams:
                return None
            st = self.streams[sid] = LiveStream(sid, deque(maxlen=self.max_points))
        return st

    async def publish_window(self, result: WindowResult) -> None:
        lat = result.latency_ms.get("fast_path", result.latency_ms.get("publish_delay"))
        if lat is not None:
            self.fast_latency.observe(float(lat) / 1000)
        st = self._stream(result.stream)
        if st is None:
            return
        now = time.time()
        voice = result.voice
        st.windows += 1
        st.last_seen = now
        st.status = "running"
        st.latest = {
            "index": result.window.index,
            "start": round(result.window.start, 3),
            "end": round(result.window.end, 3),
            "label": result.label,
            "score": round(float(result.score), 3),
            "scores": {k: round(float(v), 3) for k, v in result.scores.items()},
            "faces": len(result.faces),
            "speech": bool(voice.speech) if voice is not None else None,
            "speech_ratio": round(float(voice.speech_ratio), 3) if voice is not None else None,
            "ts": round(result.ts, 3),
        }
        point = [round(now, 3), result.label, st.latest["score"], st.latest["scores"]]
        st.points.append(point)
        while st.points and st.points[0][0] < now - self.history_s:
            st.points.popleft()
        self.broadcast(
            "window", {"stream": st.stream, "windows": st.windows, "latest": st.latest, "point": point}
        )

    async def publish_state(self, stream: str, payload: dict[str, Any]) -> None:
        st = self.streams.get(stream)
        if st is None:
            return
        st.smoothed = {
            "label": payload.get("label"),
            "score": payload.get("score"),
            "since": payload.get("since"),
        }
        self.broadcast("state", {"stream": stream, "smoothed": st.smoothed})

    async def publish_reasoning(self, result: ReasoningResult) -> None:
        self.reasoning_total += 1
        if not result.valid:
            self.reasoning_invalid += 1
        self.reasoning_latency.observe(float(result.latency_ms) / 1000)
        st = self.streams.get(result.stream)
        if st is None:
            return
        st.reasoning = {
            "index": result.window.index,
            "think": result.think[:600],
            "answer": result.answer if result.valid else None,
            "valid": bool(result.valid),
            "fallback": result.fallback_label,
            "ts": round(result.ts, 3),
        }
        self.broadcast("reasoning", {"stream": st.stream, "reasoning": st.reasoning})

    async def publish_event(self, payload: dict[str, Any]) -> None:
        ev = {k: payload.get(k) for k in ("type", "stream", "label", "start", "end", "top_score", "ts")}
        self.events.append(ev)
        self.broadcast("event", ev)

    async def publish_stats(self, payload: dict[str, Any]) -> None:
        """Keep the stats for /metrics and follow each stream's status; forget streams that are gone."""
        self.latest_stats = payload
        rows = payload.get("streams") or {}
        now = time.time()
        for sid, row in rows.items():
            st = self.streams.get(sid)
            if st is not None and st.status != row.get("status"):
                st.status = str(row.get("status"))
                self.broadcast("status", {"stream": sid, "status": st.status})
        for sid, st in list(self.streams.items()):
            # the engine forgot it (a call that ended), or it ended a while ago: off the live list
            gone = sid not in rows and now - st.last_seen > 2.0
            ended = (
                st.status in ("finished", "failed", "stopped") and now - st.last_seen > self.forget_after_s
            )
            if gone or ended:
                del self.streams[sid]
                self.broadcast("remove", {"stream": sid})

    def stats(self) -> dict[str, Any]:
        return {
            "streams": len(self.streams),
            "subscribers": len(self._subs),
            "dropped": self.dropped,
            "refused": self.refused,
        }

    async def close(self) -> None:
        self.broadcast("bye", {"ts": round(time.time(), 3)})

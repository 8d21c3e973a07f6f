"""The per-stream ledger of a cluster run (a Ray actor on the coordinator's node).

Why a ledger: a stream actor can die with its node at any moment, and its replacement must continue
the window numbering without publishing an index twice. So, per stream:

* **epoch fencing** — the coordinator bumps the epoch before it starts a replacement; every call from
  an actor carries its epoch and a stale one is refused, so a zombie (a node that was only slow) can
  never publish again;
* **write-ahead index** — an actor commits window k here *before* handing it to MQTT; the replacement
  starts after the highest committed index. A window committed but lost with its node is part of the
  gap (at most once), never a duplicate;
* **heartbeats** carry the actor's counters (the coordinator's `stats`) and reveal a silent actor
  faster than the cluster's node health check;
* **gaps** are counted (restarts, windows lost) for `stats`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class StreamRecord:
    stream: str
    epoch: int = 0
    committed: int = -1  # highest window index an actor may have published
    acked: int = -1  # highest window index handed to the MQTT sink
    commit_wall: float | None = None  # epoch seconds of the last commit
    wall_t0: float | None = None  # wall time of stream time 0 (paced sources); kept across restarts
    restarts: int = 0
    gaps: int = 0
    windows_lost: int = 0
    node: str | None = None
    status: str = "starting"  # starting | running | finished | failed | restarting
    error: str | None = None
    beats: int = 0  # heartbeats of the current epoch (0: its actor is still starting)
    last_beat: float = field(default_factory=time.monotonic)
    counters: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Wrapped by `ray.remote` (sync actor: every call is atomic)."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamRecord] = {}

    def _rec(self, stream: str) -> StreamRecord:
        rec = self.streams.get(stream)
        if rec is None:
            rec = self.streams[stream] = StreamRecord(stream)
        return rec

    def fence(self, stream: str, restart: bool = False) -> int:
        """A new epoch for `stream` (before starting an actor); older epochs are refused from now on."""
        rec = self._rec(stream)
        rec.epoch += 1
        rec.beats = 0
        if restart:
            rec.restarts += 1
            rec.status = "restarting"
        rec.last_beat = time.monotonic()
        return rec.epoch

    def begin(self, stream: str, epoch: int, node: str) -> dict[str, Any] | None:
        """An actor of `epoch` starts on `node`: its resume point, or None if it is already stale."""
        rec = self._rec(stream)
        if epoch != rec.epoch:
            return None
        rec.node, rec.status, rec.last_beat = node, "running", time.monotonic()
        return {
            "committed": rec.committed,
            "acked": rec.acked,
            "commit_wall": rec.commit_wall,
            "wall_t0": rec.wall_t0,
            "restarts": rec.restarts,
        }

    def set_t0(self, stream: str, epoch: int, wall_t0: float) -> float:
        """Stream time 0 in wall time, set once by the first actor; later actors get the first value."""
        rec = self._rec(stream)
        if epoch == rec.epoch and rec.wall_t0 is None:
            rec.wall_t0 = wall_t0
        return rec.wall_t0 if rec.wall_t0 is not None else wall_t0

    def commit(self, stream: str, epoch: int, index: int) -> bool:
        """May window `index` be published? Only for the current epoch and strictly after the last."""
        rec = self._rec(stream)
        if epoch != rec.epoch or index <= rec.committed:
            return False
        rec.committed, rec.commit_wall, rec.last_beat = index, time.time(), time.monotonic()
        return True

    def ack(self, stream: str, epoch: int, index: int) -> None:
        rec = self._rec(stream)
        if epoch == rec.epoch:
            rec.acked = max(rec.acked, index)

    def beat(self, stream: str, epoch: int, counters: dict[str, Any]) -> bool:
        """Heartbeat with the actor's counters; False tells a fenced actor to stop."""
        rec = self._rec(stream)
        if epoch != rec.epoch:
            return False
        rec.last_beat = time.monotonic()
        rec.beats += 1
        rec.counters = counters
        return True

    def gap(self, stream: str, epoch: int, windows_lost: int) -> None:
        rec = self._rec(stream)
        if epoch == rec.epoch:
            rec.gaps += 1
            rec.windows_lost += max(0, windows_lost)

    def finish(self, stream: str, epoch: int, status: str, error: str | None = None) -> None:
        rec = self._rec(stream)
        if epoch == rec.epoch:
            rec.status, rec.error = status, error

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every stream's record, with `beat_age_s` (seconds since its actor was last heard)."""
        now = time.monotonic()
        out = {}
        for sid, rec in self.streams.items():
            d = asdict(rec)
            d["beat_age_s"] = round(now - d.pop("last_beat"), 3)
            out[sid] = d
        return out

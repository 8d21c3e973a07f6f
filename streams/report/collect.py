"""A sink that keeps a run's results in memory so `run --report` can draw them without a JSONL file.

Bounded: beyond `max_records` (about a day of one stream at a 1 s hop) the oldest are dropped and
counted, and the report says so.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from affectstream.engine.types import ReasoningResult, WindowResult
from affectstream.streams.sinks.base import Sink


class ReportCollector(Sink):
    def __init__(self, max_records: int = 200_000) -> None:
        self.records: deque[dict[str, Any]] = deque(maxlen=max_records)
        self.dropped = 0

    def _keep(self, payload: dict[str, Any]) -> None:
        if len(self.records) == self.records.maxlen:
            self.dropped += 1
        self.records.append(payload)

    async def publish_window(self, result: WindowResult) -> None:
        self._keep(result.to_payload())

    async def publish_reasoning(self, result: ReasoningResult) -> None:
        self._keep(result.to_payload())

    async def publish_event(self, payload: dict[str, Any]) -> None:
        self._keep(dict(payload))

    def stats(self) -> dict[str, Any]:
        return {"records": len(self.records), "dropped": self.dropped}

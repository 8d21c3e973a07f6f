"""Where results go. Every sink gets every message; a failing sink never stops the engine."""

from __future__ import annotations

from abc import ABC
from typing import Any

from affectstream.engine.types import ReasoningResult, WindowResult


class Sink(ABC):  # noqa: B024 - every hook has a sensible no-op default
    async def start(self) -> None:
        return None

    async def publish_window(self, result: WindowResult) -> None:
        return None

    async def publish_state(self, stream: str, payload: dict[str, Any]) -> None:
        return None

    async def publish_reasoning(self, result: ReasoningResult) -> None:
        return None

    async def publish_event(self, payload: dict[str, Any]) -> None:
        return None

    async def publish_stats(self, payload: dict[str, Any]) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        """Counters for the `stats` message (queued, dropped, reconnects...)."""
        return {}

    def failure(self) -> str | None:
        """Why this sink stopped delivering during the run (one line), or None. A failing sink never
        stops the engine, but the run must not look successful: the exit code reflects this."""
        return None

    async def close(self) -> None:
        return None

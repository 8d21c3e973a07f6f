"""The analyzer interface every profile implements.

Analyzers are synchronous and CPU/GPU bound: the engine calls them from a worker thread so the event
loop (sources, MQTT) never blocks. `analyze_batch` exists so a profile can batch across streams when
several windows are ready at once; the default just loops.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from affectstream.engine.types import Window, WindowResult


@runtime_checkable
class Analyzer(Protocol):
    profile: str

    def analyze(self, window: Window) -> WindowResult: ...

    def analyze_batch(self, windows: list[Window]) -> list[WindowResult]: ...

    def close(self) -> None: ...


class AnalyzerBase:
    """Convenience base: implement `analyze`, inherit batching-by-loop and a no-op close."""

    profile: str = "base"

    def analyze(self, window: Window) -> WindowResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def analyze_batch(self, windows: list[Window]) -> list[WindowResult]:
        return [self.analyze(w) for w in windows]

    def close(self) -> None:
        return None

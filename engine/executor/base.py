"""The analysis executor interface: how the orchestrator hands windows to the fast path.

The `Pipeline` only ever calls `submit(window) -> future`; where the analysis runs (a thread of this
process, a pool of warm worker processes, a Ray cluster) is the executor's business. Keeping the
interface this small is what lets a distributed backend plug in without touching the orchestrator.

The contract every backend keeps:
- results of one stream complete **in submission order** (the analyzer keeps per-stream state —
  face tracks, streaming VAD, the frame cache — so a stream always goes to the same analyzer);
- `capacity` is how many windows it accepts at once; the pipeline never has more in flight, so a
  backend never queues without bound (overload is handled where windows wait, per stream);
- each result carries `latency_ms["analyze"]`: this window's share of the analyzer call, ms;
- a failed analysis fails that window's future (the pipeline counts it), never the executor.

The analyzer is built where it runs, from a picklable zero-argument *factory* (`AnalyzerFactory`:
profile + settings), never pickled itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from affectstream.engine.analyzer import Analyzer
from affectstream.engine.types import Window, WindowResult

if TYPE_CHECKING:
    from affectstream.engine.config import Settings

AnalyzerFactoryFn = Callable[[], Analyzer]


@runtime_checkable
class Executor(Protocol):
    """Runs the fast-path analyzer on windows; the Pipeline only talks to this."""

    name: str  # "thread" | "process" | "ray"

    async def start(self) -> None:
        """Spawn workers / load models once; idempotent."""

    def submit(self, window: Window) -> asyncio.Future[WindowResult]:
        """Queue one window; its future resolves to the result (per-stream submission order)."""
        ...

    @property
    def capacity(self) -> int:
        """Windows it can have in flight at once."""
        ...

    def stats(self) -> dict[str, Any]:
        """in_flight, completed, failed, retried, per-worker info."""
        ...

    async def close(self) -> None:
        """Stop workers; pending futures are cancelled."""


@dataclass(frozen=True)
class AnalyzerFactory:
    """Builds the configured fast-path analyzer in whichever process runs it (picklable: JSON settings).

    `threads` overrides the ONNX Runtime intra-op thread count (worker processes pin it to 1 so N
    workers on N cores do not oversubscribe them); `profile_dir` overrides where `lite` is found.
    """

    settings_json: str
    profile_dir: str | None = None
    threads: int | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, profile_dir: str | None = None, threads: int | None = None
    ) -> AnalyzerFactory:
        return cls(settings.model_dump_json(), None if profile_dir is None else str(profile_dir), threads)

    def settings(self) -> Settings:
        from affectstream.engine.config import Settings

        return Settings.model_validate_json(self.settings_json)

    def __call__(self) -> Analyzer:
        s = self.settings()
        if s.profile == "r1-omni":
            from affectstream.engine.omni.analyzer import OmniAnalyzer

            if s.omni.checkpoint is None:
                raise ValueError("the r1-omni profile needs omni.checkpoint")
            extra = {
                k: getattr(s.omni, k)
                for k in ("bert_dir", "vision_dir", "audio_dir", "onnx_dir", "llm_gguf")
                if getattr(s.omni, k) is not None
            }
            return OmniAnalyzer.from_checkpoint(  # type: ignore[no-any-return]
                s.omni.checkpoint,
                device=s.omni.device,
                dtype=s.omni.dtype,
                audio_mode=s.omni.audio_mode,
                max_new_tokens=s.omni.max_new_tokens,
                **extra,
            )
        from affectstream.engine.lite import LiteAnalyzer
        from affectstream.engine.paths import profile_dir

        kw: dict[str, Any] = {} if self.threads is None else {"threads": self.threads}
        d = self.profile_dir or profile_dir("lite")
        return LiteAnalyzer.from_profile(d, s.lite, runtime=s.runtime, **kw)


class BatchPlanner:
    """Deadline-aware batching: how many queued windows to analyse in the next call.

    A batch is never *waited for*: a free worker takes what is queued at once. It takes as many
    windows as still let the oldest one in the batch be published within `target_ms` of its window's
    close (cost learned from past calls), so aligned windows of many streams are not all held until
    the slowest finishes; when that deadline is already lost (overload) it takes up to `max_batch`,
    since then only throughput helps.
    """

    def __init__(self, target_ms: float = 150.0, max_batch: int = 8, initial_ms: float = 30.0) -> None:
        self.target_s = target_ms / 1000
        self.max_batch = max(1, int(max_batch))
        self.per_window_s = initial_ms / 1000
        self.overhead_s = 0.002

    def observe(self, n: int, seconds: float) -> None:
        """Learn the per-window cost from a finished call of `n` windows (EWMA)."""
        if n > 0:
            self.per_window_s = 0.8 * self.per_window_s + 0.2 * max(0.0, seconds - self.overhead_s) / n

    def take(self, queue: deque[Any], closed_at: Callable[[Any], float] = lambda w: w.closed_at) -> list[Any]:
        """Pop the next batch (FIFO) from `queue`; at least one item when the queue is not empty."""
        if not queue:
            return []
        now = time.monotonic()
        batch = [queue.popleft()]
        deadline = closed_at(batch[0]) + self.target_s
        late = now + self.overhead_s + self.per_window_s > deadline
        while queue and len(batch) < self.max_batch:
            nxt = min(deadline, closed_at(queue[0]) + self.target_s)
            finish = now + self.overhead_s + (len(batch) + 1) * self.per_window_s
            if not late and finish > nxt:
                break
            batch.append(queue.popleft())
            deadline = nxt
        return batch


def set_analyze_ms(results: list[WindowResult], seconds: float) -> None:
    """Stamp each result with its share of the analyzer call (`latency_ms["analyze"]`)."""
    per = seconds * 1000 / max(1, len(results))
    for r in results:
        r.latency_ms["analyze"] = per


def default_workers(reserve: int = 0) -> int:
    """One worker process per core: each runs one intra-op thread, so N workers fill N cores.

    `reserve` cores are left to the engine process when it has heavy work of its own: `serve` decodes
    every caller's VP8 video there, and on 2 cores two workers starved that decoding (6 callers: p95
    1.7-2.0 s, not real time) where one worker held them (p95 0.3 s; bench/RESULTS.md, capacity)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - max(0, reserve))


def resolve_backend(settings: Settings, live_streams: int = 1) -> str:
    """ "auto" → "process" when several live streams share the node, else "thread" (one stream, files,
    tests: no start-up cost, no extra memory)."""
    b = settings.executor.backend
    if b != "auto":
        return b
    return "process" if live_streams > 1 else "thread"


def make_executor(
    settings: Settings,
    analyzer_factory: AnalyzerFactoryFn | None = None,
    *,
    analyzer: Analyzer | None = None,
    live_streams: int = 1,
) -> Executor:
    """The executor `settings.executor.backend` asks for.

    The thread backend runs `analyzer` if given (else builds one from the factory); the process and
    Ray backends build analyzers where they run, from `analyzer_factory` (default: `AnalyzerFactory`
    from `settings`, one intra-op thread per worker).
    """
    backend = resolve_backend(settings, live_streams)
    ex = settings.executor
    if backend == "thread":
        from affectstream.engine.executor.thread import ThreadExecutor

        if analyzer is None:
            factory = analyzer_factory or AnalyzerFactory.from_settings(settings)
            return ThreadExecutor(factory=factory, settings=ex)
        return ThreadExecutor(analyzer, settings=ex)
    factory = analyzer_factory or AnalyzerFactory.from_settings(settings, threads=ex.threads_per_worker)
    if backend == "process":
        from affectstream.engine.executor.process import ProcessExecutor

        return ProcessExecutor(factory, settings=ex)
    if backend == "ray":
        try:
            from affectstream.engine.executor.ray_backend import RayExecutor  # type: ignore[import-not-found]
        except ImportError as e:
            raise ValueError(f"executor backend 'ray' is not available: {e}") from e
        return RayExecutor(factory, settings=settings)  # type: ignore[no-any-return]
    raise ValueError(f"unknown executor backend {backend!r}")

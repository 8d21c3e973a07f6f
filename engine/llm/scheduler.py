"""The slow path: decide which windows get reasoning and run it off the event loop.

Why this shape: a generation takes ~1 s while windows close every ~0.5–2 s, so reasoning every
window would build an unbounded backlog and stall the fast path. Instead:
- triggers pick windows worth explaining: the stream's first window, a change of the fast label,
  every N windows, or an explicit request;
- at most one generation is in flight per stream, and at most one window waits behind it (the
  latest trigger wins; the one it replaces is counted as skipped);
- a fixed pool of reasoners (one thread each, each with its own model) runs the generations, so
  `submit()` returns at once and the event loop never blocks;
- results go to the async callback when there is one, else to a bounded queue read with `get()`
  (drop-oldest, counted). Never both: a queue nobody reads would fill up after `queue_size` results
  and count every later result as dropped although the callback delivered it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affectstream.engine.llm.reasoner import Reasoner
from affectstream.engine.metrics import percentile
from affectstream.engine.priority import leave_idle, lower_thread_priority
from affectstream.engine.types import ReasoningResult, WindowResult

ResultCallback = Callable[[ReasoningResult], Awaitable[None] | None]
LATENCY_WINDOW = 512  # recent latencies kept for percentiles (bounded memory)


@dataclass(slots=True)
class _StreamState:
    last_label: str | None = None
    since_reasoned: int = 0
    requested: bool = False
    in_flight: bool = False
    pending: WindowResult | None = None
    pending_at: float = 0.0


@dataclass(slots=True)
class SchedulerStats:
    submitted: int = 0  # windows offered
    triggered: int = 0  # windows that met a trigger
    not_triggered: int = 0  # windows with no trigger (not reasoned by design)
    skipped: int = 0  # triggered windows replaced by a newer one before a worker was free
    completed: int = 0
    valid: int = 0
    invalid: int = 0
    dropped: int = 0  # results dropped from the full output queue (oldest first; queue mode only)
    callback_errors: int = 0  # on_result raised (that result is lost to the consumer, counted here)
    left_idle: int = 0  # generations lifted out of SCHED_IDLE after `idle_grace_s` (the CPU was saturated)
    decode_ms: list[float] = field(default_factory=list)
    end_to_end_ms: list[float] = field(default_factory=list)  # submit → result, queueing included

    def to_dict(self) -> dict[str, float | int | None]:
        def pct(xs: list[float], q: float) -> float | None:
            v = percentile(xs, q)  # the project's one p50/p95 definition (nearest rank)
            return None if v is None else round(v, 1)

        return {
            "submitted": self.submitted,
            "triggered": self.triggered,
            "not_triggered": self.not_triggered,
            "skipped": self.skipped,
            "completed": self.completed,
            "valid": self.valid,
            "invalid": self.invalid,
            "dropped": self.dropped,
            "callback_errors": self.callback_errors,
            "left_idle": self.left_idle,
            "latency_p50_ms": pct(self.decode_ms, 50),
            "latency_p95_ms": pct(self.decode_ms, 95),
            "end_to_end_p50_ms": pct(self.end_to_end_ms, 50),
            "end_to_end_p95_ms": pct(self.end_to_end_ms, 95),
        }


class ReasoningScheduler:
    """Async front of a reasoner pool. Use from one event loop; `submit` never waits for a generation."""

    def __init__(
        self,
        reasoners: Sequence[Reasoner],
        every_n: int = 0,
        on_change: bool = True,
        queue_size: int = 64,
        on_result: ResultCallback | None = None,
        owns_models: bool = False,
        nice: int = 0,
        idle: bool = False,
        idle_grace_s: float = 0.0,
    ) -> None:
        if not reasoners:
            raise ValueError("scheduler needs at least one reasoner")
        if every_n < 0 or queue_size < 1:
            raise ValueError(f"every_n must be ≥ 0 and queue_size ≥ 1 (got {every_n}, {queue_size})")
        self._reasoners = list(reasoners)
        self._owns_models = owns_models
        self._idle: list[Reasoner] = list(reasoners)
        self._pool = ThreadPoolExecutor(
            max_workers=len(reasoners),
            thread_name_prefix="reasoner",
            initializer=lower_thread_priority,
            initargs=(0 if idle else nice,),  # idle: set per generation by `_work` (it may have been lifted)
        )
        self._nice, self._sched_idle, self.idle_grace_s = nice, idle, float(idle_grace_s)
        self._tids: dict[int, int] = {}  # id(reasoner) → native id of the thread running it now
        self.every_n = every_n
        self.on_change = on_change
        self.on_result = on_result
        self.results: asyncio.Queue[ReasoningResult] = asyncio.Queue(maxsize=queue_size)
        self.counters = SchedulerStats()
        self._streams: dict[str, _StreamState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._rr: list[str] = []  # round-robin order of streams waiting for a worker
        self._closed = False

    # -- public API -------------------------------------------------------------------------------
    def request(self, stream: str) -> None:
        """Reason about the next window of `stream` whatever the triggers say."""
        self._state(stream).requested = True

    async def submit(self, result: WindowResult, force: bool = False) -> bool:
        """Offer a fast-path result; returns at once. True if it was queued or started for reasoning."""
        return self.offer(result, force)

    def offer(self, result: WindowResult, force: bool = False) -> bool:
        """Synchronous `submit` for callers already on the event loop (the engine's analyze loop)."""
        if self._closed:
            return False
        st = self._state(result.stream)
        self.counters.submitted += 1
        st.since_reasoned += 1
        changed = result.label != st.last_label
        st.last_label = result.label
        trigger = (
            force
            or st.requested
            or (self.on_change and changed)
            or (self.every_n > 0 and st.since_reasoned >= self.every_n)
        )
        if not trigger:
            self.counters.not_triggered += 1
            return False
        self.counters.triggered += 1
        st.requested = False
        st.since_reasoned = 0
        if st.pending is not None:
            self.counters.skipped += 1  # the newer trigger replaces the one still waiting
        else:
            self._rr.append(result.stream)
        st.pending = result
        st.pending_at = time.perf_counter()
        self._dispatch()
        return True

    async def get(self) -> ReasoningResult:
        return await self.results.get()

    def stats(self) -> dict[str, float | int | None]:
        """Numbers for the `stats` message: trigger/skip counts, latency p50/p95, runtime failures."""
        d = self.counters.to_dict()
        d["in_flight"] = sum(s.in_flight for s in self._streams.values())
        d["pending"] = sum(s.pending is not None for s in self._streams.values())
        for key in ("errors", "forced_close", "constrained", "agree_fast", "ungrounded"):
            d[key] = sum(getattr(r.stats, key) for r in self._reasoners)
        return d

    snapshot = stats

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until nothing is pending or in flight (tests, clean shutdown)."""

        async def _wait() -> None:
            while self._tasks or any(s.pending is not None for s in self._streams.values()):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(_wait(), timeout)

    async def aclose(self, timeout: float = 30.0) -> None:
        """Stop accepting, let in-flight generations finish (bounded wait), then free threads and models."""
        self._stop_accepting()
        if self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)
        self.close()

    def close(self) -> None:
        """Synchronous shutdown: waits for the generation in flight (≤ one per worker), frees models."""
        self._stop_accepting()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._owns_models:
            for r in self._reasoners:
                close = getattr(r.lm, "close", None)
                if close is not None:
                    close()
            self._owns_models = False

    def _stop_accepting(self) -> None:
        self._closed = True
        for s in self._streams.values():
            s.pending = None
        self._rr.clear()

    # -- internals --------------------------------------------------------------------------------
    def _state(self, stream: str) -> _StreamState:
        st = self._streams.get(stream)
        if st is None:
            st = self._streams[stream] = _StreamState()
        return st

    def _dispatch(self) -> None:
        """Start pending windows on idle reasoners, round-robin across streams, one per stream."""
        i = 0
        while self._idle and i < len(self._rr):
            stream = self._rr[i]
            st = self._streams[stream]
            if st.in_flight or st.pending is None:
                i += 1
                continue
            self._rr.pop(i)
            result, submitted_at = st.pending, st.pending_at
            st.pending = None
            st.in_flight = True
            reasoner = self._idle.pop()
            task = asyncio.get_running_loop().create_task(self._run(reasoner, result, submitted_at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _work(self, reasoner: Reasoner, result: WindowResult) -> ReasoningResult:
        """One generation on a worker thread; with `idle`, under SCHED_IDLE (set here, not once per thread,
        so a thread lifted by `_lift` during its last generation starts this one idle again)."""
        if self._sched_idle:
            lower_thread_priority(self._nice, True)
        self._tids[id(reasoner)] = threading.get_native_id()
        try:
            return reasoner.reason(result)
        finally:
            self._tids.pop(id(reasoner), None)  # a late timer must not lift a thread that moved on

    def _lift(self, reasoner: Reasoner) -> None:
        """A generation still running after `idle_grace_s`: the CPU is saturated and SCHED_IDLE would
        starve it indefinitely, so it finishes at the `nice` level instead (counted as `left_idle`)."""
        tid = self._tids.get(id(reasoner))
        if tid is not None and leave_idle(tid, self._nice):
            self.counters.left_idle += 1

    async def _run(self, reasoner: Reasoner, result: WindowResult, submitted_at: float) -> None:
        loop = asyncio.get_running_loop()
        timer = None
        if self._sched_idle and self.idle_grace_s > 0:
            timer = loop.call_later(self.idle_grace_s, self._lift, reasoner)
        try:
            out = await loop.run_in_executor(self._pool, self._work, reasoner, result)
        finally:
            if timer is not None:
                timer.cancel()
            self._idle.append(reasoner)
            self._streams[result.stream].in_flight = False
        s = self.counters
        s.completed += 1
        s.valid += int(out.valid)
        s.invalid += int(not out.valid)
        s.decode_ms.append(out.latency_ms)
        s.end_to_end_ms.append((time.perf_counter() - submitted_at) * 1000)
        del s.decode_ms[:-LATENCY_WINDOW], s.end_to_end_ms[:-LATENCY_WINDOW]
        if self.on_result is None:
            if self.results.full():
                self.results.get_nowait()
                s.dropped += 1
            self.results.put_nowait(out)
        else:
            try:
                ret = self.on_result(out)
                if asyncio.iscoroutine(ret):
                    await ret
            except Exception:  # a faulty consumer must not stop reasoning for other windows
                s.callback_errors += 1
        if not self._closed:
            self._dispatch()


def build_lite_slow_path(settings: Any, profile: Any, on_result: ResultCallback) -> ReasoningScheduler:
    """The engine's slow path from `settings.reasoning` and the lite profile (folder or Profile).

    `reasoning.model` overrides the profile's GGUF (e.g. an RLVR-trained one); `reasoning.lora` adds a
    GGUF LoRA adapter, else the profile's `llm_lora` component when it has one. One worker: with
    2 cores a second concurrent generation would only slow both and the fast path.
    """
    from affectstream.engine.llm.llama import LlamaCppLM
    from affectstream.engine.profile import Profile

    rs = settings.reasoning
    prof = profile if isinstance(profile, Profile) else Profile.load(profile, verify=False)
    gguf = Path(rs.model) if rs.model else prof.path("llm")
    lora = Path(rs.lora) if rs.lora else (prof.path("llm_lora") if prof.has("llm_lora") else None)
    layout = getattr(rs, "layout", "auto")
    if layout == "auto":  # an adapter only works with the prompt layout it was trained on
        pinned = not rs.lora and prof.has("llm_lora")
        layout = prof.component("llm_lora").inputs.get("prompt_layout", "legacy") if pinned else "evidence"
    lm = LlamaCppLM(gguf, threads=rs.threads, lora_path=lora)
    reasoner = Reasoner(lm, max_tokens=rs.max_tokens, grammar=rs.grammar, profile=prof.name, layout=layout)
    reasoner.warm()  # the fixed prompt head goes to the KV cache now, not on the first window
    return ReasoningScheduler(
        [reasoner],
        every_n=rs.every_n,
        on_change=rs.on_change,
        on_result=on_result,
        owns_models=True,
        nice=int(getattr(rs, "nice", 0)),
        idle=bool(getattr(rs, "idle", False)),
        idle_grace_s=float(getattr(rs, "idle_grace_s", 0.0)),
    )

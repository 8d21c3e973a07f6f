"""The slow path beside the fast path: real llama.cpp generations, a real mosquitto, a real event loop."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import aiomqtt
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm.llama import LlamaCppLM
from affectstream.engine.llm.reasoner import Reasoner
from affectstream.engine.llm.scheduler import ReasoningScheduler
from affectstream.engine.metrics import percentile
from affectstream.engine.types import ReasoningResult, WindowRef, WindowResult
from fixtures_mqtt import Collector


def _result(label: str, index: int, stream: str = "cam0") -> WindowResult:
    return WindowResult(stream, WindowRef(index, index * 0.5, index * 0.5 + 2.0), label, 0.6, {label: 0.6})


async def test_busy_stream_keeps_only_the_latest_trigger_and_counts_skips(llama_model: LlamaCppLM) -> None:
    sched = ReasoningScheduler([Reasoner(llama_model, max_tokens=8)])
    try:
        assert await sched.submit(_result("happy", 0))  # first window of a stream: starts at once
        assert await sched.submit(_result("sad", 1))  # label changed while busy: waits
        assert await sched.submit(_result("angry", 2))  # replaces window 1, which is skipped
        assert not await sched.submit(_result("angry", 3))  # same label, no other trigger
        sched.request("cam0")
        assert await sched.submit(_result("angry", 4))  # on request: replaces window 2
        await sched.drain(60)
        got = [sched.results.get_nowait() for _ in range(sched.results.qsize())]
        assert [r.window.index for r in got] == [0, 4]
        s = sched.stats()
        assert (s["submitted"], s["triggered"], s["not_triggered"], s["skipped"], s["completed"]) == (
            5,
            4,
            1,
            2,
            2,
        )
        assert s["latency_p50_ms"] is not None and s["latency_p95_ms"] >= s["latency_p50_ms"]
    finally:
        await sched.aclose()


async def test_every_n_trigger_and_fair_order_across_streams(llama_model: LlamaCppLM) -> None:
    sched = ReasoningScheduler([Reasoner(llama_model, max_tokens=4)], every_n=3, on_change=False)
    try:
        for i in range(7):  # on_change off: only every 3rd window of the stream → 2, 5
            await sched.submit(_result("neutral", i, "a"))
            await sched.drain(60)
        await sched.submit(_result("neutral", 0, "b"))
        got = [sched.results.get_nowait() for _ in range(sched.results.qsize())]
        assert [(r.stream, r.window.index) for r in got] == [("a", 2), ("a", 5)]
    finally:
        await sched.aclose()
    # one reasoner, two streams: waiting streams are served in arrival order, one in flight each,
    # and a stream's newer trigger replaces its own waiting window (b0), never another stream's
    sched = ReasoningScheduler([Reasoner(llama_model, max_tokens=4)])
    try:
        for stream, label, i in (("a", "sad", 0), ("b", "sad", 0), ("a", "happy", 1), ("b", "fear", 1)):
            await sched.submit(_result(label, i, stream))
        await sched.drain(60)
        got = [sched.results.get_nowait() for _ in range(sched.results.qsize())]
        assert [(r.stream, r.window.index) for r in got] == [("a", 0), ("b", 1), ("a", 1)]
        assert sched.stats()["skipped"] == 1
    finally:
        await sched.aclose()


async def test_fast_path_keeps_publishing_while_generations_run(llama_model: LlamaCppLM, mosquitto) -> None:
    """Windows every 100 ms on MQTT for 3 s while the LLM reasons on label changes: no window is late."""
    period, n = 0.1, 30
    loop = asyncio.get_running_loop()

    async def tick_lag(seconds: float) -> list[float]:
        lags, t_next = [], loop.time()
        end = t_next + seconds
        while t_next < end:
            t_next += 0.01
            await asyncio.sleep(max(0.0, t_next - loop.time()))
            lags.append((loop.time() - t_next) * 1000)
        return lags

    idle_lag = await tick_lag(1.0)  # event-loop lag with no generation, same machine, same run

    async with (
        Collector(mosquitto.port, "t/cam0/#") as col,
        aiomqtt.Client("127.0.0.1", mosquitto.port) as pub,
    ):

        async def publish_reasoning(r: ReasoningResult) -> None:
            await pub.publish("t/cam0/reasoning", json.dumps(r.to_payload()), qos=1)

        sched = ReasoningScheduler([Reasoner(llama_model, max_tokens=48)], on_result=publish_reasoning)
        lag_task = asyncio.create_task(tick_lag(n * period))
        submit_ms, sent_at, t_next = [], [], loop.time()
        try:
            for i in range(n):
                label = EMOTIONS[(i // 4) % len(EMOTIONS)]  # label changes every 4 windows
                r = _result(label, i)
                t0 = time.perf_counter()
                await sched.submit(r)
                submit_ms.append((time.perf_counter() - t0) * 1000)
                await pub.publish("t/cam0/window", json.dumps(r.to_payload()), qos=1)
                sent_at.append(loop.time())
                t_next += period
                await asyncio.sleep(max(0.0, t_next - loop.time()))
            busy_lag = await lag_task
            await sched.drain(60)
            await asyncio.sleep(0.3)
        finally:
            await sched.aclose()
        stats = sched.stats()

    windows = [json.loads(m.payload) for m in col.on("/window")]
    reasoning = [json.loads(m.payload) for m in col.on("/reasoning")]
    late = max(b - a - period for a, b in itertools.pairwise(sent_at)) * 1000
    print(
        f"\nevent-loop lag ms: idle p95 {percentile(idle_lag, 95):.1f} max {max(idle_lag):.1f} | "
        f"generating p95 {percentile(busy_lag, 95):.1f} max {max(busy_lag):.1f}; "
        f"submit max {max(submit_ms):.2f} ms; worst window gap beyond period {late:.0f} ms; stats {stats}"
    )
    assert [w["window"]["index"] for w in windows] == list(range(n))  # every window published, in order
    assert max(submit_ms) < 20  # submit never waits for a generation
    assert stats["completed"] >= 2 and stats["skipped"] >= 1  # it really reasoned, and it really was busy
    assert stats["triggered"] == stats["completed"] + stats["skipped"]
    assert len(reasoning) == stats["completed"]
    triggered_at = {i for i in range(n) if i % 4 == 0}
    for m in reasoning:  # each explains a window that was triggered, with its own time span
        assert m["window"]["index"] in triggered_at and m["valid"] and m["answer"] in EMOTIONS
        assert m["window"]["start"] == m["window"]["index"] * 0.5
    assert percentile(busy_lag, 95) < 100 and late < 250  # fast path never stalls behind the LLM


async def test_reasoner_thread_runs_at_lower_priority(llama_model: LlamaCppLM) -> None:
    """`reasoning.nice` / `reasoning.idle`: the generation runs in a thread whose nice value is raised by
    that much, or that runs under SCHED_IDLE (Linux per-thread priority), so the fast path keeps the
    cores; the engine's own threads are untouched."""
    import os
    import threading

    class Probe(Reasoner):
        seen: list[tuple[int, int]]

        def reason(self, result: WindowResult) -> ReasoningResult:
            tid = threading.get_native_id()
            self.seen.append((os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid)))
            return super().reason(result)

    base = os.getpriority(os.PRIO_PROCESS, 0)
    policy = os.sched_getscheduler(0)
    cases = (
        (5, False, (min(19, base + 5), policy)),
        (0, False, (base, policy)),
        (5, True, (base, os.SCHED_IDLE)),  # idle wins; nice is the fallback where SCHED_IDLE is refused
    )
    for nice, idle, want in cases:
        probe = Probe(llama_model, max_tokens=4)
        probe.seen = []
        sched = ReasoningScheduler([probe], nice=nice, idle=idle)
        try:
            assert await sched.submit(_result("happy", 0))
            await sched.drain(60)
        finally:
            await sched.aclose()
        assert probe.seen == [want]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    assert os.sched_getscheduler(0) == policy


async def test_a_starved_idle_generation_is_lifted_to_nice_after_the_grace(llama_model: LlamaCppLM) -> None:
    """`reasoning.idle_grace_s`: a generation still running after the grace leaves SCHED_IDLE for the
    `nice` level (a saturated CPU would otherwise starve it indefinitely), is counted as `left_idle`, and
    the worker's next generation starts under SCHED_IDLE again."""
    import os
    import threading
    import time as _time

    class Slow(Reasoner):
        seen: list[tuple[int, int, int]]  # policy at start, policy and nice at the end
        delay: float

        def reason(self, result: WindowResult) -> ReasoningResult:
            tid = threading.get_native_id()
            start = os.sched_getscheduler(tid)
            _time.sleep(self.delay)  # stands in for a generation that the CPU cannot serve
            out = super().reason(result)
            self.seen.append((start, os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)))
            return out

    base = os.getpriority(os.PRIO_PROCESS, 0)
    slow = Slow(llama_model, max_tokens=4)
    slow.seen, slow.delay = [], 0.6
    sched = ReasoningScheduler([slow], nice=5, idle=True, idle_grace_s=0.2)
    try:
        assert await sched.submit(_result("happy", 0, stream="a"))
        await sched.drain(60)
        slow.delay, sched.idle_grace_s = 0.0, 60.0  # the next one ends well inside the grace: not lifted
        assert await sched.submit(_result("sad", 1, stream="a"))
        await sched.drain(60)
    finally:
        await sched.aclose()
    lifted, quick = slow.seen
    assert lifted[0] == os.SCHED_IDLE and lifted[1:] == (os.SCHED_OTHER, min(19, base + 5))
    assert quick[:2] == (os.SCHED_IDLE, os.SCHED_IDLE)
    assert sched.stats()["left_idle"] == 1

"""Reasoning results consumed by callback (how the pipeline consumes them) are never counted as dropped.

Before the fix every result also went to the scheduler's bounded queue, which nobody reads when a
callback is set: after `queue_size` (64) results each further one evicted an old one and counted a
drop, so `stats` reported losses that never happened. Real llama.cpp generations, > 64 of them.
"""

from __future__ import annotations

from affectstream.engine.llm.llama import LlamaCppLM
from affectstream.engine.llm.reasoner import Reasoner
from affectstream.engine.llm.scheduler import ReasoningScheduler
from affectstream.engine.types import ReasoningResult, WindowRef, WindowResult

N = 70  # > the default queue_size of 64


async def test_callback_consumer_sees_every_result_and_no_drops(llama_model: LlamaCppLM) -> None:
    got: list[ReasoningResult] = []

    async def on_result(r: ReasoningResult) -> None:
        got.append(r)

    sched = ReasoningScheduler([Reasoner(llama_model, max_tokens=2, grammar=False)], on_result=on_result)
    try:
        for i in range(N):  # the first window of each stream always triggers: N generations
            r = WindowResult(f"s{i}", WindowRef(0, 0.0, 2.0), "happy", 0.9, {"happy": 0.9})
            assert sched.offer(r)
        await sched.drain(600)
    finally:
        await sched.aclose()
    s = sched.stats()
    assert len(got) == N and sorted(r.stream for r in got) == sorted(f"s{i}" for i in range(N))
    assert s["completed"] == N and s["dropped"] == 0 and s["callback_errors"] == 0
    assert sched.results.qsize() == 0  # the queue is for consumers without a callback only


async def test_queue_consumer_still_gets_drop_oldest(llama_model: LlamaCppLM) -> None:
    sched = ReasoningScheduler([Reasoner(llama_model, max_tokens=2, grammar=False)], queue_size=3)
    try:
        for i in range(5):
            sched.offer(WindowResult(f"q{i}", WindowRef(0, 0.0, 2.0), "sad", 0.9, {"sad": 0.9}))
        await sched.drain(300)
    finally:
        await sched.aclose()
    kept = [sched.results.get_nowait().stream for _ in range(sched.results.qsize())]
    # one reasoner serves waiting streams in arrival order; the queue keeps the newest three
    assert kept == ["q2", "q3", "q4"] and sched.stats()["dropped"] == 2

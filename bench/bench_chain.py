"""The streaming chain's own cost and the end-to-end latency with the real `lite` analyzer.

Two runs over the same decoded media, in one process, so the ratio is fair on a noisy machine:
1. **real**: FileSource → windower → LiteAnalyzer → smoother → MQTT (a real mosquitto on 127.0.0.1)
   + JSONL. Reports windows/s and the latency from window close to MQTT hand-off (p50/p95).
2. **replay**: the same chain with the analyzer replaced by a replay of the results recorded in run 1,
   so what remains is the chain itself (windowing, queueing, smoothing, payload building, schema-valid
   MQTT publishing). Reports the chain's overhead per window; the goal is < 5 ms.

Usage: python bench/bench_chain.py [--streams 4] [--clip examples/sample.mp4]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import shutil
import time
from pathlib import Path

from _broker import start_mosquitto

ROOT = Path(__file__).resolve().parents[1]


class MemorySource:
    """Pre-decoded media replayed from memory, so decoding cost is not counted as chain cost."""

    live = False
    duration = None

    def __init__(self, stream_id: str, items: list, realtime: bool = False, delay: float = 0.0) -> None:
        from affectstream.streams.sources.base import SourceStats

        self.stream_id = stream_id
        self.items = items
        self.live = realtime
        self.delay = delay  # start offset, so streams' windows do not all close at the same instant
        self.stats = SourceStats()

    async def __aiter__(self):
        await asyncio.sleep(self.delay)
        t0 = time.monotonic()
        for i, it in enumerate(self.items):
            if self.live:
                ts = getattr(it, "end", None) or it.ts  # audio is available at its end
                delay = t0 + ts - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 64 == 0:
                await asyncio.sleep(0)
            yield it

    async def close(self) -> None:
        return None


class ReplayAnalyzer:
    """Returns the results the real analyzer produced for the same (stream, window index)."""

    profile = "lite"

    def __init__(self, recorded: dict) -> None:
        self.recorded = recorded

    def analyze(self, w):
        r = copy.copy(self.recorded[w.index])
        r.stream = w.stream_id
        r.latency_ms = dict(r.latency_ms)
        return r

    def analyze_batch(self, ws):
        return [self.analyze(w) for w in ws]

    def close(self) -> None:
        return None


async def decode(clip: Path) -> list:
    from affectstream.streams.sources.file import FileSource

    return [it async for it in FileSource(clip, "decode")]


async def run_chain(settings, analyzer, sources, port: int, jsonl: Path):
    from affectstream.engine.app import make_mqtt_sink
    from affectstream.engine.pipeline import Pipeline
    from affectstream.engine.smoother import Smoother
    from affectstream.streams.sinks.jsonl import JsonlSink

    sinks = [make_mqtt_sink(settings.mqtt, f"mqtt://127.0.0.1:{port}"), JsonlSink(jsonl)]
    recorded = []
    eng = Pipeline(settings, analyzer, sinks, smoother=Smoother(), node_id="bench", on_result=recorded.append)
    t0 = time.perf_counter()
    await eng.run(sources)
    wall = time.perf_counter() - t0
    return wall, recorded, eng


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", type=Path, default=ROOT / "examples" / "sample.mp4")
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--replay-repeat", type=int, default=20, help="replay streams (more windows → stabler)")
    args = ap.parse_args()

    from affectstream.engine.app import ensure_profile
    from affectstream.engine.config import load_settings
    from affectstream.engine.lite import LiteAnalyzer

    settings = load_settings(None, {"mqtt.node_id": "bench", "window.max_pending": 4, "progress": False})
    mosq, port, tmp = start_mosquitto()
    try:
        items = asyncio.run(decode(args.clip))
        analyzer = LiteAnalyzer.from_profile(ensure_profile("lite"), settings.lite)
        # warm-up (ORT sessions, caches, first-call allocations) so the timed run measures steady state
        asyncio.run(
            run_chain(
                settings, analyzer, [MemorySource("warm", items[: len(items) // 3])], port, tmp / "warm.jsonl"
            )
        )
        hop = settings.window.hop
        runs = {}
        for mode, stagger in (("aligned", 0.0), ("staggered", hop / args.streams)):
            srcs = [
                # fresh stream ids per run: the per-frame cache must not serve the second run
                MemorySource(f"{mode}{i}", items, realtime=True, delay=i * stagger)
                for i in range(args.streams)
            ]
            runs[mode] = asyncio.run(run_chain(settings, analyzer, srcs, port, tmp / f"{mode}.jsonl"))
        wall, recorded, eng = runs["aligned"]
        n = len(recorded)
        dropped = sum(st.windows_dropped for st in eng.streams.values())
        lat = eng.fast_latency.percentiles()
        ana = eng.analyze_latency.percentiles()
        slat = runs["staggered"][2].fast_latency.percentiles()
        by_index = {r.window.index: r for r in recorded}  # any stream: same clip, same windows
        rsrcs = [MemorySource(f"r{i}", items) for i in range(args.replay_repeat)]
        rwall, rrec, reng = asyncio.run(
            run_chain(settings, ReplayAnalyzer(by_index), rsrcs, port, tmp / "replay.jsonl")
        )
        rn = len(rrec)
        overhead_ms = rwall / rn * 1000
        mq = reng.stats_payload()["sinks"].get("MqttSink", {})
        print(f"machine: {os.cpu_count()} cores; clip {args.clip.name}")
        print(
            f"real analyzer, {args.streams} real-time streams: {n} windows in {wall:.2f} s "
            f"({n / wall:.1f} windows/s), {dropped} dropped"
        )
        print(f"  analyzer per window p50/p95 : {ana['p50']} / {ana['p95']} ms")
        print(
            f"  window close → MQTT p50/p95, windows of all streams closing together: {lat['p50']} / {lat['p95']} ms"
        )
        print(
            f"  window close → MQTT p50/p95, streams offset by hop/{args.streams}: {slat['p50']} / {slat['p95']} ms"
        )
        print("  (goal p95 <= 150 ms)")
        print(f"replay (chain only): {rn} windows in {rwall:.2f} s = {rn / rwall:.0f} windows/s")
        print(f"  chain overhead per window    : {overhead_ms:.2f} ms (goal < 5 ms)")
        print(f"  ratio analyzer p50 / chain overhead: {ana['p50'] / overhead_ms:.1f}x")
        print(
            f"  mqtt sink: published={mq.get('published')} dropped={mq.get('dropped')} invalid={mq.get('invalid')}"
        )
    finally:
        mosq.terminate()
        mosq.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

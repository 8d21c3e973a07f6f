"""Publish throughput of the MQTT sink vs a raw aiomqtt publish loop, to a local mosquitto, same run.

Why: the sink adds JSON serialisation, a bounded queue and ack tracking on top of aiomqtt; this shows
what that costs (ratio sink / raw) at QoS 0 and QoS 1. Each case publishes N real-sized `window`
payloads; QoS 1 counts a message only once the broker's PUBACK arrived. The raw QoS 1 baseline is given
both one-at-a-time and with the same number of messages in flight as the sink (32).

    python bench/bench_mqtt.py [--n 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiomqtt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from affectstream.streams.sinks.mqtt import MqttSink
from fixtures_mqtt import running_mosquitto

TOPIC = "affectstream/bench/cam1/window"


def _results(n: int) -> list:
    from fixtures_mqtt import make_result

    rng = np.random.default_rng(0)
    return [make_result("cam1", i, rng) for i in range(n)]


async def raw(port: int, payloads: list[bytes], qos: int, inflight: int) -> float:
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=max(inflight, 20)) as c:
        c.pending_calls_threshold = inflight + 16
        t0 = time.perf_counter()
        if inflight == 1:
            for p in payloads:
                await c.publish(TOPIC, p, qos=qos)
        else:
            for i in range(0, len(payloads), inflight):
                await asyncio.gather(*(c.publish(TOPIC, p, qos=qos) for p in payloads[i : i + inflight]))
        return len(payloads) / (time.perf_counter() - t0)


async def sink(port: int, results: list, qos: int, inflight: int = 32) -> float:
    s = MqttSink(
        f"mqtt://127.0.0.1:{port}",
        node_id="bench",
        window_qos=qos,
        queue_max=len(results) + 10,
        max_inflight=inflight,
    )
    await s.start()
    assert s.connected, s.last_error
    assert await s.wait_idle(10)
    before = s.stats()["published"]
    t0 = time.perf_counter()
    for r in results:
        await s.publish_window(r)
    assert await s.wait_idle(120)
    dt = time.perf_counter() - t0
    published = s.stats()["published"] - before
    await s.close()
    assert published == len(results), (published, len(results))
    return len(results) / dt


async def latency(port: int, results: list, use_sink: bool, n: int = 200, hz: float = 50.0) -> list[float]:
    """Milliseconds from handing one result over to a subscriber receiving it (QoS 1, paced, no backlog)."""
    sent: dict[int, float] = {}
    got: list[float] = []
    async with aiomqtt.Client("127.0.0.1", port) as sub:
        await sub.subscribe(TOPIC, qos=1)

        async def receive() -> None:
            async for m in sub.messages:
                idx = json.loads(m.payload)["window"]["index"]  # type: ignore[arg-type]
                got.append((time.perf_counter() - sent[idx]) * 1000)
                if len(got) == n:
                    return

        rx = asyncio.create_task(receive())
        if use_sink:
            s = MqttSink(f"mqtt://127.0.0.1:{port}", node_id="bench", window_qos=1)
            await s.start()
            assert s.topics.stream("cam1", "window") == TOPIC
        else:
            c = aiomqtt.Client("127.0.0.1", port)
            await c.__aenter__()
        for r in results[:n]:
            sent[r.window.index] = time.perf_counter()
            if use_sink:
                await s.publish_window(r)
            else:
                await c.publish(TOPIC, json.dumps(r.to_payload(), separators=(",", ":")).encode(), qos=1)
            await asyncio.sleep(1 / hz)
        await asyncio.wait_for(rx, 30)
        if use_sink:
            await s.close()
        else:
            await c.__aexit__(None, None, None)
    return got


def _pct(v: list[float], q: float) -> float:
    return sorted(v)[min(len(v) - 1, int(q * len(v)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    results = _results(args.n)
    payloads = [json.dumps(r.to_payload(), separators=(",", ":")).encode() for r in results]
    print(
        f"{args.n} window payloads of ~{statistics.mean(map(len, payloads)):.0f} B, median of {args.repeat}"
    )
    with running_mosquitto() as m:
        cases = {
            "raw qos0": lambda: raw(m.port, payloads, 0, 1),
            "sink qos0": lambda: sink(m.port, results, 0),
            "raw qos1 1-at-a-time": lambda: raw(m.port, payloads, 1, 1),
            "raw qos1 32 in flight": lambda: raw(m.port, payloads, 1, 32),
            "sink qos1 32 in flight": lambda: sink(m.port, results, 1, 32),
            "sink qos1 1-at-a-time": lambda: sink(m.port, results, 1, 1),
        }
        rates: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeat):  # interleaved, so load changes hit every case alike
            for name, fn in cases.items():
                rates[name].append(await fn())
        lat_raw = await latency(m.port, results, use_sink=False)
        lat_sink = await latency(m.port, results, use_sink=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k:24s} {v:9.0f} msg/s")
    print(f"ratio sink/raw qos0                 {med['sink qos0'] / med['raw qos0']:.2f}")
    for mode in ("1-at-a-time", "32 in flight"):
        r = med[f"sink qos1 {mode}"] / med[f"raw qos1 {mode}"]
        print(f"ratio sink/raw qos1 ({mode}){' ' * (14 - len(mode))}{r:.2f}")
    for name, lat in (("raw", lat_raw), ("sink", lat_sink)):
        print(
            f"latency hand-over -> subscriber, qos1, 50 Hz, {name:4s}: p50 {_pct(lat, 0.5):.2f} ms  p95 {_pct(lat, 0.95):.2f} ms"
        )
    print(f"ratio sink/raw latency p50 {_pct(lat_sink, 0.5) / _pct(lat_raw, 0.5):.2f}")


if __name__ == "__main__":
    asyncio.run(main())

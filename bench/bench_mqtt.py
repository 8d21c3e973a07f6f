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


async def sink(port: int, results: list, qos: int) -> float:
    s = MqttSink(f"mqtt://127.0.0.1:{port}", node_id="bench", window_qos=qos, queue_max=len(results) + 10)
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
            "sink qos1": lambda: sink(m.port, results, 1),
        }
        rates: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeat):  # interleaved, so load changes hit every case alike
            for name, fn in cases.items():
                rates[name].append(await fn())
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k, v in med.items():
        print(f"{k:24s} {v:9.0f} msg/s")
    print(f"ratio sink/raw qos0                 {med['sink qos0'] / med['raw qos0']:.2f}")
    print(f"ratio sink/raw qos1 (1-at-a-time)   {med['sink qos1'] / med['raw qos1 1-at-a-time']:.2f}")
    print(f"ratio sink/raw qos1 (32 in flight)  {med['sink qos1'] / med['raw qos1 32 in flight']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

"""Broker outages and dying publishers, with real processes: nothing lost, nothing doubled, LWT delivered."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from affectstream.streams.contract import validate
from affectstream.streams.sinks.mqtt import MqttSink
from fixtures_mqtt import Collector, Mosquitto, make_result, retained_now

NODE = "restartnode"
PREFIX = f"affectstream/{NODE}"


@pytest.mark.slow
async def test_broker_killed_10s_mid_run_every_window_arrives_exactly_once(mosquitto: Mosquitto) -> None:
    """SIGKILL the broker mid-run for 10 s while windows keep coming; restart it on the same port.

    The subscriber uses a persistent session (fixed client id, clean_session=False) that mosquitto
    keeps in its persistence db, so messages published while it is still reconnecting wait for it.
    The kill happens once everything sent so far was acknowledged end to end and autosaved (QoS 1 is
    at-least-once by protocol; a kill in the middle of a PUBACK would allow a legitimate duplicate that
    says nothing about the sink). So "exactly once" below is a real check of the sink's queue: a message
    re-sent after being acknowledged, or one lost from the queue, fails it.
    """
    rate_hz, before, during, after = 20, 40, 200, 40
    sink = MqttSink(
        mosquitto.url, node_id=NODE, window_qos=1, backoff_min_s=0.2, backoff_max_s=1.0, connect_timeout_s=2
    )
    rng = np.random.default_rng(11)
    async with Collector(mosquitto.port, f"{PREFIX}/+/window", client_id="restart-test-sub") as sub:
        await sink.start()
        assert sink.connected
        index = 0

        async def produce(n: int) -> None:
            nonlocal index
            for _ in range(n):
                await sink.publish_window(make_result("cam1", index, rng))
                index += 1
                await asyncio.sleep(1 / rate_hz)

        await produce(before)
        assert await sink.wait_idle(5) and await sub.wait_for(lambda ms: len(ms) >= before, 5)
        await asyncio.sleep(1.5)  # let mosquitto autosave the settled session state (autosave_interval 1)
        mosquitto.stop(signal.SIGKILL)
        t_kill = time.monotonic()
        await produce(during)  # 10 s of results while the broker is dead
        assert not sink.connected
        queued_while_down = sink.stats()["queued"]
        mosquitto.start()
        down_s = time.monotonic() - t_kill
        await produce(after)
        assert await sink.wait_idle(15), sink.stats()
        total = before + during + after
        assert await sub.wait_for(lambda ms: len(ms) >= total, 15), (len(sub.messages), sink.stats())
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        st = sink.stats()
        await sink.close()

    indices = [json.loads(m.payload)["window"]["index"] for m in sub.messages]
    assert sorted(indices) == list(range(total)), "every window exactly once"
    assert indices == list(range(total)), "and in order"
    assert down_s >= 10.0
    assert queued_while_down >= during * 0.9  # they really waited in the sink's queue
    assert st["reconnects"] >= 1 and st["dropped"] == 0
    assert sub.connects >= 2  # the subscriber also lived through the outage
    for m in sub.messages[:: max(1, total // 20)]:
        validate("window", json.loads(m.payload))
    got = await retained_now(mosquitto.port, f"{PREFIX}/available")
    assert got[f"{PREFIX}/available"] == b"offline"  # close() after the restart still said goodbye


_PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from affectstream.streams.sinks.mqtt import MqttSink

    async def main():
        sink = MqttSink(sys.argv[1], node_id=sys.argv[2])
        await sink.start()
        print("connected" if sink.connected else "failed", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_lwt_offline_when_publisher_is_killed(mosquitto: Mosquitto) -> None:
    async with Collector(mosquitto.port, f"{PREFIX}/available") as sub:
        proc = subprocess.Popen(
            [sys.executable, "-c", _PUBLISHER, mosquitto.url, NODE], stdout=subprocess.PIPE, text=True
        )
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)  # type: ignore[union-attr]
            assert line.strip() == "connected"
            assert await sub.wait_for(lambda ms: any(m.payload == b"online" for m in ms), 5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            assert await sub.wait_for(lambda ms: ms[-1].payload == b"offline", 5)
            lwt_ms = (sub.messages[-1].t - t0) * 1000
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert [m.payload for m in sub.messages] == [b"online", b"offline"]
    assert lwt_ms < 2000
    got = await retained_now(mosquitto.port, f"{PREFIX}/available")
    assert got[f"{PREFIX}/available"] == b"offline"  # retained: a late subscriber learns it too


@pytest.mark.slow
async def test_broker_stopped_mid_publish_loses_nothing_and_resends_only_unacked(
    mosquitto: Mosquitto,
) -> None:
    """Stop the broker (SIGTERM) while windows stream at 200 Hz, with messages genuinely in flight.

    QoS 1 is at-least-once, so a subscriber may legitimately see a message twice here. The checks
    separate who caused it: the broker's own re-deliveries carry the MQTT DUP flag; a copy *without*
    it can only come from the sink publishing again, which it may do only for messages it had in
    flight and unacknowledged when the connection broke (`requeued`). No window may be missing.
    """
    n = 900
    sink = MqttSink(mosquitto.url, node_id=NODE, window_qos=1, backoff_min_s=0.1, backoff_max_s=0.5)
    rng = np.random.default_rng(7)
    results = [make_result("cam1", i, rng) for i in range(n)]
    async with Collector(mosquitto.port, f"{PREFIX}/+/window", client_id="unsettled-sub") as sub:
        await sink.start()

        async def outage() -> None:
            await asyncio.sleep(1.5)
            mosquitto.stop(signal.SIGTERM)
            await asyncio.sleep(2.0)
            mosquitto.start()

        task = asyncio.create_task(outage())
        for r in results:
            await sink.publish_window(r)
            await asyncio.sleep(0.005)
        await task
        assert await sink.wait_idle(20), sink.stats()
        assert await sub.wait_for(lambda ms: len({m.payload for m in ms}) >= n, 15)
        await asyncio.sleep(0.5)
        st = sink.stats()
        await sink.close()

    first_seen: list[int] = []
    seen: set[int] = set()
    resent_by_sink = 0
    for m in sub.messages:
        i = json.loads(m.payload)["window"]["index"]
        if i in seen:
            resent_by_sink += not m.dup
        else:
            seen.add(i)
            first_seen.append(i)
    assert seen == set(range(n)), f"missing windows: {sorted(set(range(n)) - seen)[:20]}"
    assert first_seen == list(range(n)), "first arrivals in publish order"
    assert st["reconnects"] >= 1 and st["dropped"] == 0
    assert resent_by_sink <= st["requeued"], (resent_by_sink, st)

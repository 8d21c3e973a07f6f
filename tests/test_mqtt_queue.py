"""The sink's bounded offline queue, without a broker: drop-oldest accounting and state coalescing."""

from __future__ import annotations

import numpy as np
from affectstream.streams.sinks.mqtt import MqttSink
from fixtures_mqtt import free_port, make_result
from hypothesis import given, settings
from hypothesis import strategies as st


def _sink(queue_max: int) -> MqttSink:
    # Never started: nothing is sent, so the queue's bookkeeping is observable on its own.
    return MqttSink(f"mqtt://127.0.0.1:{free_port()}", node_id="q", queue_max=queue_max)


@settings(max_examples=40, deadline=None)
@given(
    ops=st.lists(st.sampled_from(["window", "state:a", "state:b", "event"]), max_size=80),
    cap=st.integers(1, 25),
)
async def test_queue_bound_and_counters_add_up(ops: list[str], cap: int) -> None:
    sink = _sink(cap)
    rng = np.random.default_rng(0)
    for i, op in enumerate(ops):
        if op == "window":
            await sink.publish_window(make_result("a", i, rng))
        elif op.startswith("state:"):
            await sink.publish_state(op[6:], {"i": i})
        else:
            await sink.publish_event({"i": i})
    s = sink.stats()
    live = [m for m in sink._queue if not m.superseded]
    assert len(sink._queue) <= cap  # bounded, whatever happens
    assert s["queued"] == len(live)  # the O(1) counter matches the queue
    assert s["queued"] + s["dropped"] + s["coalesced"] == len(ops)  # every message is accounted for
    for stream in ("a", "b"):  # at most one pending state per stream, and it is the newest one
        states = [m for m in live if m.topic.endswith(f"/{stream}/state")]
        assert len(states) <= 1
        last = max((i for i, op in enumerate(ops) if op == f"state:{stream}"), default=None)
        if states:
            assert states[0].payload == f'{{"i":{last}}}'.encode()
    if len(ops) > cap:
        assert s["dropped"] + s["coalesced"] >= len(ops) - cap


async def test_drop_oldest_keeps_the_newest_in_order() -> None:
    sink = _sink(5)
    rng = np.random.default_rng(0)
    for i in range(12):
        await sink.publish_window(make_result("a", i, rng))
    idx = [int(m.payload.split(b'"index":')[1].split(b",")[0]) for m in sink._queue]
    assert idx == [7, 8, 9, 10, 11]
    assert sink.stats()["dropped"] == 7 and sink.stats()["queued"] == 5


async def test_stats_are_skipped_while_offline() -> None:
    sink = _sink(10)
    await sink.publish_stats({"schema": "affectstream.stats/1"})
    assert sink.stats()["skipped_offline"] == 1 and sink.stats()["queued"] == 0

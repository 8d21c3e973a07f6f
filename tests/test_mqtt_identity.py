"""Two engines under one node id, the one MQTT settings model, and drops that are never silent.

Before the fix both engines derived the client id from the node id (the host name by default), so the
broker threw each one off whenever the other connected: ~40 reconnects in 40 s and `available`
flapping. Now each process has its own client id, topics stay under the node id, and each engine warns
that another one publishes under its node id.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from affectstream.engine.config import MqttSettings, load_settings
from affectstream.streams.sinks.mqtt import MqttSink, MqttTarget
from fixtures_mqtt import Mosquitto, free_port, make_result, retained_now

NODE = "same-host"
RNG = np.random.default_rng(18)


async def _until(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_client_ids_are_unique_per_process_topics_stay_under_the_node() -> None:
    a, b = MqttSink("mqtt://127.0.0.1:1", node_id=NODE), MqttSink("mqtt://127.0.0.1:1", node_id=NODE)
    assert a.client_id != b.client_id
    assert a.client_id.startswith(f"affectstream-{NODE}-")
    assert a.topics.available == b.topics.available == f"affectstream/{NODE}/available"
    chosen = MqttSink("mqtt://127.0.0.1:1", node_id=NODE, client_id="door-engine")
    assert chosen.client_id == "door-engine"


async def test_two_engines_one_node_id_do_not_fight_and_both_warn(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="affectstream.mqtt")
    a = MqttSink(mosquitto.url, node_id=NODE, backoff_min_s=0.05, backoff_max_s=0.2)
    b = MqttSink(mosquitto.url, node_id=NODE, backoff_min_s=0.05, backoff_max_s=0.2)
    await a.start()
    assert await a.wait_connected(5)
    await b.start()
    assert await b.wait_connected(5)
    for i in range(20):  # both keep publishing for ~2 s
        await a.publish_window(make_result("cam-a", i, RNG))
        await b.publish_window(make_result("cam-b", i, RNG))
        await asyncio.sleep(0.1)
    assert await a.wait_idle(10) and await b.wait_idle(10)
    assert await _until(lambda: a.same_node_seen > 0 and b.same_node_seen > 0, 5)
    # no fight over the session: each connected once
    assert a.stats()["reconnects"] == 0 and b.stats()["reconnects"] == 0
    assert a.stats()["dropped"] == 0 and b.stats()["published"] >= 20
    warnings = [r.getMessage() for r in caplog.records if "same node id" in r.getMessage()]
    assert len(warnings) == 2, warnings  # once per engine, not once per message
    # one engine leaving does not mark the node offline while the other still runs
    await b.close()
    await asyncio.sleep(0.5)
    got = await retained_now(mosquitto.port, f"affectstream/{NODE}/available")
    assert got[f"affectstream/{NODE}/available"] == b"online"
    await a.close()
    got = await retained_now(mosquitto.port, f"affectstream/{NODE}/available")
    assert got[f"affectstream/{NODE}/available"] == b"offline"


async def test_a_single_engine_does_not_warn(mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="affectstream.mqtt")
    a = MqttSink(mosquitto.url, node_id="alone")
    await a.start()
    assert await a.wait_connected(5)
    await a.publish_window(make_result("cam", 0, RNG))
    assert await a.wait_idle(5)
    await asyncio.sleep(0.3)
    assert a.same_node_seen == 0
    await a.close()
    assert not [r for r in caplog.records if "same node id" in r.getMessage()]


async def test_offline_queue_drops_are_warned_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """No broker: the bounded queue drops the oldest; that is said once (not per message), and the
    count is there for the exit summary."""
    caplog.set_level(logging.WARNING, logger="affectstream.mqtt")
    sink = MqttSink(f"mqtt://127.0.0.1:{free_port()}", node_id="q", queue_max=5, connect_timeout_s=0.5)
    await sink.start()
    for i in range(12):
        await sink.publish_window(make_result("cam", i, RNG))
    assert sink.dropped == 7
    full = [r for r in caplog.records if "offline queue full" in r.getMessage()]
    assert len(full) == 1
    await sink.close(flush_timeout_s=0.2)


def test_the_sink_takes_its_values_from_the_one_settings_model() -> None:
    s = load_settings(
        None,
        {
            "mqtt.url": "mqtts://bob:p%40ss@127.0.0.1:8884?node=n1&window_qos=1&client_id=cid&insecure=1",
            "mqtt.offline_queue": 77,
        },
    )
    assert isinstance(s.mqtt, MqttSettings)
    t = MqttTarget.from_settings(s.mqtt)
    assert (t.host, t.port, t.tls, t.username, t.password) == ("127.0.0.1", 8884, True, "bob", "p@ss")
    assert (t.node_id, t.window_qos, t.client_id, t.tls_insecure, t.queue_max) == ("n1", 1, "cid", True, 77)
    assert t.topics.available == "affectstream/n1/available"
    # the embedded broker's URL: address from it, everything else from the settings
    e = MqttTarget.from_settings(load_settings(None, {"mqtt.node_id": "x"}).mqtt, "mqtt://127.0.0.1:1999")
    assert (e.port, e.node_id, e.tls) == (1999, "x", False)

"""The MQTT sink against a real mosquitto: topics, flags, schemas, retained state, credentials, refusals."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
from affectstream.engine.smoother import Smoother
from affectstream.engine.types import ReasoningResult
from affectstream.streams.contract import stats_payload, validate
from affectstream.streams.sinks.mqtt import MqttSink, MqttTarget
from fixtures_mqtt import Collector, Mosquitto, free_port, make_result, retained_now, running_mosquitto

NODE = "testnode"
PREFIX = f"affectstream/{NODE}"


async def _drive(sink: MqttSink, stream: str, n: int, seed: int = 0) -> Smoother:
    """Publish n windows through the smoother the way the engine does: window, state, events."""
    rng = np.random.default_rng(seed)
    sm = Smoother()
    for i in range(n):
        r = make_result(stream, i, rng)
        up = sm.update(r)
        await sink.publish_window(r)
        await sink.publish_state(stream, up.state)
        for ev in up.events:
            await sink.publish_event(ev)
    for ev in sm.finish(stream):
        await sink.publish_event(ev)
    return sm


async def _until(cond, timeout: float = 10.0) -> bool:
    """Poll a condition (the machine is shared and slow at times: never rely on a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_every_payload_validates_and_uses_contract_topics(mosquitto: Mosquitto) -> None:
    sink = MqttSink(f"{mosquitto.url}?node={NODE}&window_qos=1")
    async with Collector(mosquitto.port, f"{PREFIX}/#") as sub:
        await sink.start()
        assert sink.connected
        await _drive(sink, "cam1", 12)
        r = make_result("cam1", 3, np.random.default_rng(1))
        await sink.publish_reasoning(
            ReasoningResult(
                "cam1", r.window, "The face smiles broadly.", "happy", True, "SmolLM2-135M", 812.0
            )
        )
        await sink.publish_stats(
            stats_payload(NODE, {"cam1": {"fps_in": 25.0, "windows": 12}}, {"mqtt": sink.stats()}, 3.2)
        )
        assert await sink.wait_idle(10)
        ok = await sub.wait_for(lambda ms: any(m.topic.endswith("/stats") for m in ms) and len(ms) >= 27)
        assert ok, [m.topic for m in sub.messages]
        await sink.close()

    kinds = {"window": 0, "state": 0, "reasoning": 0, "events": 0, "stats": 0}
    for m in sub.messages:
        if m.topic == f"{PREFIX}/available":
            continue
        kind = m.topic.rsplit("/", 1)[1]
        payload = json.loads(m.payload)
        validate(kind, payload)  # raises with the offending field if the contract is broken
        kinds[kind] += 1
        if kind in ("window", "state", "reasoning"):
            assert m.topic == f"{PREFIX}/cam1/{kind}"
            assert payload["stream"] == "cam1"
        assert m.qos == (0 if kind == "stats" else 1)
    assert kinds["window"] == 12 and kinds["reasoning"] == 1 and kinds["stats"] == 1
    # A newer queued state supersedes an older one not yet sent; the newest always arrives.
    assert kinds["state"] + sink.stats()["coalesced"] == 12
    assert json.loads(sub.on("/cam1/state")[-1].payload)["window"]["index"] == 11
    types = [json.loads(m.payload)["type"] for m in sub.on("/events")]
    assert types[0] == "new" and types[-1] == "end"
    assert types.count("new") == types.count("end")
    assert [m.payload for m in sub.on("/available")][-1] == b"offline"  # close() says goodbye
    indices = [json.loads(m.payload)["window"]["index"] for m in sub.on("/cam1/window")]
    assert indices == list(range(12))  # in order, once each


async def test_late_subscriber_sees_retained_state_and_online(mosquitto: Mosquitto) -> None:
    sink = MqttSink(mosquitto.url, node_id=NODE)
    await sink.start()
    sm = await _drive(sink, "door", 5, seed=3)
    assert await sink.wait_idle(10)
    got = await retained_now(mosquitto.port, f"{PREFIX}/#")
    assert got[f"{PREFIX}/available"] == b"online"
    state = json.loads(got[f"{PREFIX}/door/state"])
    validate("state", state)
    assert state["window"]["index"] == 4  # the latest state, not an old one
    assert state["windows"] == 5
    assert f"{PREFIX}/door/window" not in got  # windows are not retained
    assert sm.streams == ()  # finished
    await sink.close()
    got = await retained_now(mosquitto.port, f"{PREFIX}/available")
    assert got[f"{PREFIX}/available"] == b"offline"


async def test_credentials_accepted_and_refused(
    mosquitto_auth: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    good = MqttSink(
        MqttTarget.from_url(f"mqtt://alice:wonder%20land%3A1@127.0.0.1:{mosquitto_auth.port}", node_id=NODE)
    )
    await good.start()
    assert good.connected, good.last_error
    await good.close()

    caplog.set_level(logging.WARNING, logger="affectstream.mqtt")
    bad = MqttSink(
        f"mqtt://alice:wrong@127.0.0.1:{mosquitto_auth.port}",
        node_id=NODE,
        backoff_min_s=0.05,
        backoff_max_s=0.1,
    )
    await bad.start()
    await _drive(bad, "cam1", 3)  # publishing while refused must not raise
    assert await _until(lambda: bad.stats()["auth_failures"] >= 2)
    st = bad.stats()
    assert not bad.connected
    assert st["auth_failures"] >= 2 and st["connect_failures"] == st["auth_failures"]  # retried, all auth
    assert st["queued"] >= 3  # results kept for when the credentials are fixed
    assert "refused the credentials of user 'alice'" in (bad.last_error or "")
    lines = [r.getMessage() for r in caplog.records if "credentials" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]  # said once, in one line, not once per retry
    await bad.close(flush_timeout_s=0.5)

    anon = MqttSink(f"mqtt://127.0.0.1:{mosquitto_auth.port}", node_id=NODE, backoff_min_s=0.05)
    await anon.start()
    assert anon.stats()["auth_failures"] >= 1 and "anonymous" in (anon.last_error or "")
    await anon.close(flush_timeout_s=0.2)


async def test_nothing_listening_is_counted_not_raised() -> None:
    port = free_port()  # nothing listens here
    sink = MqttSink(f"mqtt://127.0.0.1:{port}", node_id=NODE, backoff_min_s=0.05, backoff_max_s=0.1)
    await sink.start()
    await _drive(sink, "cam1", 4)
    assert await _until(lambda: sink.stats()["connect_failures"] >= 2)
    st = sink.stats()
    assert not st["connected"] and st["connect_failures"] >= 2
    assert "refused" in st["last_error"] and f"127.0.0.1:{port}" in st["last_error"]
    assert st["queued"] >= 4 + 4  # windows and states wait (coalescing keeps only the newest state)
    await sink.close(flush_timeout_s=0.3)


async def test_queue_while_broker_absent_then_delivered_when_it_appears() -> None:
    """Results produced before the broker exists are delivered once it starts; overflow is counted."""
    m = Mosquitto()
    try:
        # backoff_min 1 s: the subscriber below is subscribed long before the sink's next attempt.
        sink = MqttSink(m.url, node_id=NODE, window_qos=1, queue_max=20, backoff_min_s=1.0, backoff_max_s=1.0)
        await sink.start()
        assert not sink.connected
        rng = np.random.default_rng(5)
        for i in range(30):
            await sink.publish_window(make_result("cam1", i, rng))
        assert sink.stats()["dropped"] == 10 and sink.stats()["queued"] == 20
        m.start()
        async with Collector(m.port, f"{PREFIX}/+/window") as sub:
            assert await sink.wait_connected(10)
            assert await sink.wait_idle(10)
            assert await sub.wait_for(lambda ms: len(ms) >= 20, 10)
            await asyncio.sleep(0.2)
        got = [json.loads(x.payload)["window"]["index"] for x in sub.messages]
        assert got == list(range(10, 30))  # drop-oldest: the newest 20, in order, once each
        assert sink.stats()["dropped"] == 10
        await sink.close()
    finally:
        m.cleanup()


async def test_tls_with_ca(tmp_path: object) -> None:
    with running_mosquitto(tls=True) as m:
        assert m.tls_files is not None
        sink = MqttSink(f"mqtts://127.0.0.1:{m.port}?ca={m.tls_files.ca}", node_id=NODE)
        await sink.start()
        assert sink.connected, sink.last_error
        await _drive(sink, "cam1", 2)
        assert await sink.wait_idle(10)
        assert sink.stats()["published"] >= 1 + 2 + 2
        await sink.close()

        untrusted = MqttSink(f"mqtts://127.0.0.1:{m.port}", node_id=NODE, backoff_min_s=0.1)
        await untrusted.start()  # system CAs do not trust our test CA
        assert not untrusted.connected
        assert "certificate" in (untrusted.last_error or "").lower()
        await untrusted.close(flush_timeout_s=0.2)


def test_settings_from_url_and_bad_urls() -> None:
    s = MqttTarget.from_url("mqtts://bob:p%40ss@127.0.0.1?node=n1&window_qos=1&insecure=1")
    assert (s.host, s.port, s.tls, s.username, s.password, s.node_id, s.window_qos, s.tls_insecure) == (
        "127.0.0.1", 8883, True, "bob", "p@ss", "n1", 1, True,
    )  # fmt: skip
    assert (
        MqttTarget.from_url("mqtt://127.0.0.1", node_id="x").topics.available == "affectstream/x/available"
    )
    for bad, why in [
        ("http://127.0.0.1", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://127.0.0.1:99999", "port"),
        ("mqtt://127.0.0.1?window_qos=2", "window_qos"),
        ("mqtt://127.0.0.1?nope=1", "unknown URL option"),
        ("mqtt://127.0.0.1?node=a/b", "node id"),
    ]:
        with pytest.raises(ValueError, match=why):
            MqttTarget.from_url(bad)


async def test_bad_results_are_counted_not_raised(mosquitto: Mosquitto) -> None:
    sink = MqttSink(mosquitto.url, node_id=NODE)
    await sink.start()
    r = make_result("bad/stream", 0, np.random.default_rng(0))
    await sink.publish_window(r)  # '/' in a stream id would mis-route subscribers
    await sink.publish_event({"schema": "affectstream.events/1", "top_score": float("nan")})
    r2 = make_result("ok", 0, np.random.default_rng(0))
    r2.scores["happy"] = float("inf")  # to_payload() keeps it; strict JSON cannot carry it
    await sink.publish_window(r2)
    assert sink.stats()["invalid"] == 3
    assert "not valid JSON" in (sink.last_error or "")
    await sink.publish_window(make_result("ok", 1, np.random.default_rng(0)))
    assert await sink.wait_idle(5) and sink.connected  # still working
    await sink.close()


async def test_home_assistant_discovery(mosquitto: Mosquitto) -> None:
    sink = MqttSink(mosquitto.url, node_id="ha-node", ha_discovery=True)
    await sink.start()
    await _drive(sink, "living", 2)
    assert await sink.wait_idle(5)
    got = await retained_now(mosquitto.port, "homeassistant/#")
    cfg = json.loads(got["homeassistant/sensor/affectstream_ha_node_living/config"])
    assert cfg["state_topic"] == "affectstream/ha-node/living/state"
    assert cfg["availability_topic"] == "affectstream/ha-node/available"
    assert cfg["value_template"] == "{{ value_json.label }}"
    await sink.close()


async def test_close_with_a_backlog_is_bounded_and_still_says_offline(mosquitto: Mosquitto) -> None:
    sink = MqttSink(mosquitto.url, node_id=NODE, window_qos=1, queue_max=50_000)
    await sink.start()
    for i in range(10_000):  # several seconds of QoS 1 work here: far more than the flush budget
        await sink.publish_event({"i": i})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await sink.close(flush_timeout_s=0.5)
    assert loop.time() - t0 < 3.5  # flush budget + goodbye budget, never the whole backlog
    assert sink.pending > 0  # reported, not silently claimed delivered
    got = await retained_now(mosquitto.port, f"{PREFIX}/available")
    assert got[f"{PREFIX}/available"] == b"offline"

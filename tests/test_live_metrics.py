"""The live hub, the dashboard's event stream and `/metrics`, over a real aiohttp server on 127.0.0.1.

The hub is fed the engine's own result types and a `stats` payload built by the contract's builder (what
the Pipeline publishes); the end-to-end run with real models and three streams is in
tests/test_ops_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.types import ReasoningResult, VoiceResult, WindowRef, WindowResult
from affectstream.streams.contract import stats_payload
from affectstream.streams.sinks.live import HubFull, LiveHub
from affectstream.streams.web.dashboard import OpsServer

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families


def result(stream: str, i: int, label: str = "happy", fast_ms: float = 40.0) -> WindowResult:
    sc = {e: (0.7 if e == label else 0.05) for e in EMOTIONS}
    return WindowResult(
        stream,
        WindowRef(i, float(i), i + 2.0),
        label,
        0.7,
        sc,
        voice=VoiceResult(speech=True, speech_ratio=0.6),
        latency_ms={"fast_path": fast_ms},
    )


def stats_for(hub: LiveHub, rows: dict[str, dict[str, Any]], mqtt: dict[str, Any] | None = None) -> dict:
    sinks = {"LiveHub": hub.stats()}
    if mqtt is not None:
        sinks["MqttSink"] = mqtt
    p = stats_payload("node-a", rows, sinks, 12.0, profile="lite")
    p["runtime"] = {"expression": {"name": "onnxruntime", "device": "cpu", "providers": ["CPUExecutionProvider"],
                                   "precision": "fp32"}}  # fmt: skip
    p["reasoning"] = {"pending": 1, "in_flight": 1}
    return p


def row(analyzed: int, dropped: int = 0, pending: int = 0, status: str = "running") -> dict[str, Any]:
    return {"status": status, "windows": analyzed + dropped, "windows_analyzed": analyzed,
            "windows_dropped": dropped, "windows_pending": pending, "windows_in_flight": 0,
            "fps_in": 15.0, "fps_processed": 1.0}  # fmt: skip


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_hub_is_bounded_and_slow_viewers_lose_oldest() -> None:
    hub = LiveHub(max_points=5, max_streams=2, queue_max=3, max_subscribers=1)
    sub = hub.subscribe()
    with pytest.raises(HubFull):
        hub.subscribe()
    for i in range(8):
        await hub.publish_window(result("a", i))
    await hub.publish_window(result("b", 0))
    await hub.publish_window(result("c", 0))  # beyond max_streams: not tracked
    assert set(hub.streams) == {"a", "b"}
    assert len(hub.streams["a"].points) == 5 and hub.streams["a"].windows == 8
    # the snapshot + 9 windows (c is not tracked) into a queue of 3: the 3 newest are kept, 7 dropped
    got = [await sub.get(0.1) for _ in range(3)]
    assert [g[0] for g in got if g] == ["window", "window", "window"]
    assert got[-1] is not None and got[-1][1]["stream"] == "b"
    assert await sub.get(0.05) is None
    assert sub.dropped == hub.dropped == 7
    sub.close()
    assert hub.subscribers == 0


async def test_streams_the_engine_forgot_leave_the_dashboard() -> None:
    hub = LiveHub()
    await hub.publish_window(result("call-1", 0))
    await hub.publish_window(result("cam", 0))
    hub.streams["call-1"].last_seen = time.time() - 5
    await hub.publish_stats(stats_for(hub, {"cam": row(1)}))
    assert set(hub.streams) == {"cam"}
    await hub.publish_stats(stats_for(hub, {"cam": row(1, status="finished")}))
    assert hub.streams["cam"].status == "finished"


async def _sse(
    session: aiohttp.ClientSession, url: str, n: int, timeout: float = 10
) -> list[tuple[str, dict]]:
    """The first `n` events of a server-sent event stream."""
    out: list[tuple[str, dict]] = []
    async with session.get(url) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        event = None
        async with asyncio.timeout(timeout):
            async for raw in r.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    out.append((event, json.loads(line[6:])))
                    if len(out) >= n:
                        return out
    return out


async def test_dashboard_events_and_metrics_move_over_http() -> None:
    hub = LiveHub()
    server = OpsServer(hub, "127.0.0.1", 0, "s3cret", version="9.9")
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    auth = {"Authorization": "Bearer s3cret"}
    try:
        async with aiohttp.ClientSession() as s:
            for path in ("/metrics", "/dashboard/events", "/dashboard/snapshot"):
                async with s.get(base + path) as r:
                    assert r.status == 401, path
                async with s.get(base + path + "?token=wrong") as r:
                    assert r.status == 401, path
            async with s.get(base + "/dashboard") as r:  # the page itself holds no data
                assert r.status == 200 and "EventSource" not in await r.text()

            await hub.publish_window(result("door", 0))
            await hub.publish_stats(stats_for(hub, {"door": row(1)}, {"connected": True, "queued": 4,
                                                                       "queue_max": 100, "published": 10}))  # fmt: skip
            async with s.get(base + "/metrics", headers=auth) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                m1 = metrics(await r.text())

            # a viewer gets the snapshot, then live windows and reasoning as they happen
            task = asyncio.create_task(_sse(s, base + "/dashboard/events?token=s3cret", 3))
            await asyncio.sleep(0.3)
            await hub.publish_window(result("door", 1, "sad", fast_ms=700))
            await hub.publish_reasoning(
                ReasoningResult("door", WindowRef(1, 1, 3), "eyes down, slow voice", "sad", True, "m", 3000)
            )
            events = await task
            assert [e for e, _ in events] == ["snapshot", "window", "reasoning"]
            assert events[0][1]["streams"][0]["stream"] == "door"
            assert events[1][1]["latest"]["label"] == "sad" and events[1][1]["latest"]["speech"] is True
            assert events[2][1]["reasoning"]["answer"] == "sad"

            await hub.publish_stats(stats_for(hub, {"door": row(2, dropped=1, pending=2)}, {"connected": False,
                                                "queued": 9, "queue_max": 100, "published": 12}))  # fmt: skip
            async with s.get(base + "/metrics", headers=auth) as r:
                m2 = metrics(await r.text())
    finally:
        await server.close()

    door = (("stream", "door"),)
    assert m1[("affectstream_windows_analyzed_total", door)] == 1
    assert m2[("affectstream_windows_analyzed_total", door)] == 2
    assert m2[("affectstream_windows_dropped_total", door)] == 1
    assert m2[("affectstream_queue_depth", (("queue", "windows_pending"), ("stream", "door")))] == 2
    assert m2[("affectstream_queue_depth", (("queue", "reasoning_pending"), ("stream", "")))] == 1
    assert m1[("affectstream_mqtt_connected", ())] == 1 and m2[("affectstream_mqtt_connected", ())] == 0
    assert (
        m1[("affectstream_mqtt_pending_messages", ())] == 4
        and m2[("affectstream_mqtt_pending_messages", ())] == 9
    )
    assert m2[("affectstream_mqtt_messages_total", (("outcome", "published"),))] == 12
    # histograms: window 0 at 40 ms, window 1 at 700 ms; one reasoning of 3 s
    assert m1[("affectstream_fast_path_latency_seconds_count", ())] == 1
    assert m2[("affectstream_fast_path_latency_seconds_count", ())] == 2
    assert m2[("affectstream_fast_path_latency_seconds_bucket", (("le", "0.05"),))] == 1
    assert m2[("affectstream_fast_path_latency_seconds_bucket", (("le", "1.0"),))] == 2
    assert m2[("affectstream_fast_path_latency_seconds_sum", ())] == pytest.approx(0.74)
    assert m2[("affectstream_reasoning_latency_seconds_bucket", (("le", "2.0"),))] == 0
    assert m2[("affectstream_reasoning_latency_seconds_bucket", (("le", "4.0"),))] == 1
    rt = [k for k in m2 if k[0] == "affectstream_model_runtime_info"]
    assert rt and ("providers", "CPUExecutionProvider") in rt[0][1]
    assert m2[("process_resident_memory_bytes", ())] > 10e6
    assert m2[("affectstream_build_info", (("node", "node-a"), ("profile", "lite"), ("version", "9.9")))] == 1


async def test_grafana_example_queries_only_exported_metrics() -> None:
    """docs/grafana/affectstream-dashboard.json must not drift from what /metrics exports."""
    import re
    from pathlib import Path

    from affectstream.streams.web.prometheus import render_metrics

    hub = LiveHub()
    await hub.publish_window(result("door", 0))
    await hub.publish_reasoning(ReasoningResult("door", WindowRef(0, 0, 2), "t", "happy", True, "m", 900))
    await hub.publish_stats(
        stats_for(hub, {"door": row(1)}, {"connected": True, "queued": 0, "queue_max": 9})
    )
    exported = {
        s.name for fam in text_string_to_metric_families(render_metrics(hub).decode()) for s in fam.samples
    }
    exported |= {n.removesuffix("_bucket") for n in exported}
    dash = json.loads(
        (Path(__file__).resolve().parents[1] / "docs/grafana/affectstream-dashboard.json").read_text()
    )
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = {m for e in exprs for m in re.findall(r"\b((?:affectstream|process)_[a-z_]+)", e)}
    assert names and names <= exported, names - exported

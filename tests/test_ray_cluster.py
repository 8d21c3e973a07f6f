"""Streams on a real two-node Ray cluster on 127.0.0.1, publishing to a real mosquitto.

One cluster (a head and a second node, Ray's own cluster test utility, loopback only, usage stats off)
serves the module; the tests run in file order and the last one kills the second node's raylet:

1. nothing of the cluster listens beyond 127.0.0.1;
2. six file streams spread over both nodes (three each): every window the windower makes is on the
   broker exactly once, with valid payloads, one `available` for the node id, and a `stats` message;
3. an analyzer actor killed (its process, SIGKILL) mid-stream is replaced, in-flight windows are
   retried once, and every result still arrives in order;
4. six paced streams; the second node's raylet is killed mid-run: its streams resume on the head within
   15 s, each publishes a `gap` event, the gap is counted in `stats`, no window index is published twice,
   and the smoother continues from the retained `state`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep 127.0.0.1 (see ray_backend._keep_loopback)
ray = pytest.importorskip("ray", reason="pip install 'affectstream[ray]'")

from affectstream.engine.config import Settings  # noqa: E402
from affectstream.engine.distributed.coordinator import ClusterRun  # noqa: E402
from affectstream.engine.distributed.stream_actor import StreamSpec  # noqa: E402
from affectstream.engine.executor.base import AnalyzerFactory  # noqa: E402
from affectstream.engine.executor.ray_backend import RayExecutor, RayPoolOptions, connect  # noqa: E402
from affectstream.streams.contract import validate  # noqa: E402
from affectstream.streams.sinks.mqtt import MqttSink  # noqa: E402
from affectstream.streams.sources.file import FileSource  # noqa: E402
from affectstream.streams.windower import Windower  # noqa: E402
from fixtures_mqtt import HOST, collecting, needs_mosquitto  # noqa: E402
from media import write_clip  # noqa: E402

pytestmark = [needs_mosquitto, pytest.mark.slow, pytest.mark.timeout(600)]

# Node failure is also noticed by the cluster itself; make its health check quick for the test (the
# engine does not rely on it: stream heartbeats and analyzer timeouts find a dead node first).
SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}
NODE = {"num_cpus": 2, "node_ip_address": HOST, "object_store_memory": 200 * 2**20}


@pytest.fixture(scope="module")
def cluster() -> Any:
    from ray.cluster_utils import Cluster

    c = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={**NODE, "include_dashboard": False, "_system_config": SYSTEM_CONFIG},
    )
    second = c.add_node(**NODE)
    c.wait_for_nodes()
    connect(c.address)
    head_id = ray.get_runtime_context().get_node_id()
    try:
        yield c, second, head_id
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("rayclips")
    return {
        "short": write_clip(d / "short.mp4", seconds=6.0, fps=10, size=(320, 240)),
        "long": write_clip(d / "long.mp4", seconds=30.0, fps=10, size=(320, 240)),
    }


def _settings(url: str, node_id: str, **ray_kw: Any) -> Settings:
    return Settings(
        mqtt={"url": url, "node_id": node_id, "stats_interval": 1.0, "window_qos": 1},
        reasoning={"enabled": False},
        lite={"actions": False},
        ray={"actors": 2, "call_timeout": 8.0, "heartbeat_timeout": 5.0} | ray_kw,
    )


async def _windows_of(path: Path, settings: Settings, stream: str = "x") -> list[Any]:
    """What the windower makes of the clip (a file read as fast as possible), computed here."""
    w = settings.window
    win = Windower(stream, length=w.length, hop=w.hop, n_frames=w.frames, max_skew=10.0)
    out: list[Any] = []
    src = FileSource(path, stream)
    async for item in src:
        out += win.push(item)
    out += win.flush()
    await src.close()
    return out


def _descendants(root: int) -> set[int]:
    kids: dict[int, list[int]] = defaultdict(list)
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids[ppid].append(int(p.name))
    out, todo = set(), [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def test_cluster_listens_on_loopback_only(cluster: Any) -> None:
    mine = _descendants(os.getpid())
    out = subprocess.run(["ss", "-ltnupH"], capture_output=True, text=True, check=True).stdout
    rows = [r for r in out.splitlines() if any(f"pid={p}," in r for p in mine)]
    assert len(rows) >= 3, f"expected the cluster's listeners among:\n{out}"
    bad = [r for r in rows if not any(f" {a}:" in r for a in ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"))]
    assert not bad, "listening beyond loopback:\n" + "\n".join(bad)


async def _run(run: ClusterRun) -> tuple[Any, dict[str, str]]:
    """Run to the end, recording on which node each stream actor was placed (first placement)."""
    placement: dict[str, str] = {}
    task = asyncio.create_task(run.run())
    while not task.done():
        for sid, r in list(run.running.items()):
            placement.setdefault(sid, r.node)
        await asyncio.sleep(0.05)
    return await task, placement


def _windows(col: Any, node_id: str) -> dict[str, list[dict[str, Any]]]:
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in col.messages:
        parts = m.topic.split("/")
        if len(parts) == 4 and parts[1] == node_id and parts[3] == "window":
            per[parts[2]].append(json.loads(m.payload))
    return per


async def test_six_streams_on_two_nodes_every_window_exactly_once(
    cluster: Any, mosquitto: Any, lite_profile: Path, clips: dict[str, Path]
) -> None:
    c, _second, _head = cluster
    settings = _settings(mosquitto.url, "cl1", heartbeat_timeout=20.0)  # no failure is staged here
    expected = [x.index for x in await _windows_of(clips["short"], settings)]
    assert len(expected) >= 4
    specs = [StreamSpec(f"s{i}", "file", str(clips["short"])) for i in range(6)]
    factory = AnalyzerFactory.from_settings(settings, profile_dir=str(lite_profile), threads=1)
    sink = MqttSink(mosquitto.url, node_id="cl1")
    async with collecting(mosquitto.port, "affectstream/#", qos=1) as col:
        run = ClusterRun(settings, specs, factory, address=c.address, mqtt_url=mosquitto.url, node_sink=sink)
        outcomes, _ = await _run(run)
        n = len(expected) * 6
        await col.wait_for(lambda ms: sum(m.topic.endswith("/window") for m in ms) >= n, 20)
        await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive now
    assert {o.status for o in outcomes.values()} == {"finished"}, outcomes
    per = _windows(col, "cl1")
    assert sorted(per) == [f"s{i}" for i in range(6)]
    for sid, msgs in per.items():
        idx = [p["window"]["index"] for p in msgs]
        assert idx == expected, (sid, idx, expected)  # all of them, once each, in order
        for p in msgs:
            validate("window", p)
            assert p["stream"] == sid
    avail = [m for m in col.messages if m.topic.endswith("/available")]
    assert {m.topic for m in avail} == {"affectstream/cl1/available"}
    states = [json.loads(m.payload) for m in col.messages if m.topic.endswith("/state")]
    for st in states:
        validate("state", st)
    stats = [json.loads(m.payload) for m in col.messages if m.topic == "affectstream/cl1/stats"]
    assert stats, "no stats message"
    validate("stats", stats[-1])
    last = stats[-1]
    assert sorted(Counter(r["node"] for r in last["streams"].values()).values()) == [3, 3], last["streams"]
    assert set(last["streams"]) == {f"s{i}" for i in range(6)}
    assert last["cluster"]["restarts"] == 0 and last["cluster"]["windows_lost"] == 0
    assert last["cluster"]["analyzers"]["streams"] == [
        3,
        3,
    ]  # streams of both nodes spread over both analyzers
    assert all(row["windows_analyzed"] == len(expected) for row in last["streams"].values())


async def test_dead_analyzer_actor_is_replaced_and_windows_retried(
    cluster: Any, lite_profile: Path, clips: dict[str, Path]
) -> None:
    settings = _settings("mqtt://127.0.0.1:1", "x")
    factory = AnalyzerFactory.from_settings(settings, profile_dir=str(lite_profile), threads=1)
    ex = RayExecutor(
        factory, options=RayPoolOptions(actors=2, name="test-replace", call_timeout_s=30), connect_ray=False
    )
    await ex.start()
    windows = await _windows_of(clips["short"], settings, "a")
    first = await ex.submit(windows[0])
    assert first.window.index == windows[0].index
    slot = ex._assign["a"]
    before = (await ex.actor_info())[slot]
    futs = [ex.submit(x) for x in windows[1:]]  # queued at the actor when it dies
    os.kill(before["pid"], signal.SIGKILL)
    results = await asyncio.gather(*futs)
    assert [r.window.index for r in results] == [x.index for x in windows[1:]]
    st = ex.stats()
    assert st["replaced"] == 1 and st["retried"] >= 1 and st["failed"] == 0, st
    after = (await ex.actor_info())[slot]
    assert after["generation"] == 1 and after["pid"] != before["pid"] and after["windows"] >= 1
    ray.kill(ray.get_actor("test-replace"))


async def test_reasoning_runs_in_a_reasoner_actor(
    cluster: Any, mosquitto: Any, lite_profile: Path, clips: dict[str, Path]
) -> None:
    """With reasoning on, a reasoner actor (the LLM loaded once) explains windows and publishes
    `reasoning` on the stream's topic, like one node does."""
    c, _second, _head = cluster
    settings = _settings(mosquitto.url, "cl3", heartbeat_timeout=20.0).model_copy(
        update={"reasoning": Settings().reasoning.model_copy(update={"enabled": True, "every_n": 3})}
    )
    factory = AnalyzerFactory.from_settings(settings, profile_dir=str(lite_profile), threads=1)
    specs = [StreamSpec("r0", "file", str(clips["short"]))]
    async with collecting(mosquitto.port, "affectstream/#", qos=1) as col:
        run = ClusterRun(
            settings, specs, factory, address=c.address, mqtt_url=mosquitto.url, profile_dir=str(lite_profile)
        )
        outcomes, _ = await _run(run)
        await col.wait_for(lambda ms: any(m.topic.endswith("/reasoning") for m in ms), 10)
    assert outcomes["r0"].status == "finished"
    assert len(run.reasoners) == 1, "the reasoner actor did not load"
    windows = {
        json.loads(m.payload)["window"]["index"]
        for m in col.messages
        if m.topic == "affectstream/cl3/r0/window"
    }
    rs = [json.loads(m.payload) for m in col.messages if m.topic == "affectstream/cl3/r0/reasoning"]
    assert rs, "no reasoning published"
    for r in rs:
        validate("reasoning", r)
        assert r["window"]["index"] in windows


async def test_second_node_dies_streams_resume_on_head(
    cluster: Any, mosquitto: Any, lite_profile: Path, clips: dict[str, Path]
) -> None:
    c, second, head = cluster
    settings = _settings(mosquitto.url, "cl2")
    specs = [StreamSpec(f"p{i}", "file", str(clips["long"]), realtime=True) for i in range(6)]
    factory = AnalyzerFactory.from_settings(settings, profile_dir=str(lite_profile), threads=1)
    sink = MqttSink(mosquitto.url, node_id="cl2")
    async with collecting(mosquitto.port, "affectstream/#", qos=1) as col:
        run = ClusterRun(settings, specs, factory, address=c.address, mqtt_url=mosquitto.url, node_sink=sink)
        task = asyncio.create_task(run.run())

        def counts() -> Counter[str]:
            return Counter(m.topic.split("/")[2] for m in col.messages if m.topic.endswith("/window"))

        ok = await col.wait_for(lambda _: len(counts()) == 6 and min(counts().values()) >= 3, 120)
        assert ok, f"streams did not start: {counts()} {run.outcomes}"
        snap = ray.get(run.registry.snapshot.remote())  # where the actors really run
        placement = {sid: rec["node"] for sid, rec in snap.items()}
        moved = sorted(sid for sid, n in placement.items() if n != head)
        assert len(moved) == 3, placement
        n_before = len(col.messages)
        killed_at = time.monotonic()
        second.kill_raylet()

        def resumed(sid: str) -> float | None:
            for m in col.messages[n_before:]:
                if m.topic == f"affectstream/cl2/{sid}/window":
                    return m.t
            return None

        await col.wait_for(lambda _: all(resumed(s) is not None for s in moved), 30)
        delays = {s: (resumed(s) or 1e9) - killed_at for s in moved}
        outcomes = await asyncio.wait_for(task, 120)
        await asyncio.sleep(1.0)
    assert all(d <= 15.0 for d in delays.values()), delays
    assert {o.status for o in outcomes.values()} == {"finished"}, outcomes
    per = _windows(col, "cl2")
    for sid, msgs in per.items():
        idx = [p["window"]["index"] for p in msgs]
        assert len(idx) == len(set(idx)), f"{sid}: duplicate window index {Counter(idx).most_common(2)}"
        assert idx == sorted(idx), f"{sid}: indices out of order"
    events = [json.loads(m.payload) for m in col.messages if m.topic == "affectstream/cl2/events"]
    gaps = {e["stream"]: e for e in events if e["type"] == "gap"}
    assert set(moved) <= set(gaps), gaps
    for sid in moved:
        g = gaps[sid]
        validate("events", g)
        after = [p["window"]["index"] for p in per[sid] if p["window"]["index"] >= g["window"]["index"]]
        before = [p["window"]["index"] for p in per[sid] if p["window"]["index"] < g["window"]["index"]]
        assert g["missing"]["from"] == max(before) + 1 or g["missing"]["committed_unconfirmed"] > 0
        assert g["missing"]["to"] == after[0] - 1
    stats = [json.loads(m.payload) for m in col.messages if m.topic == "affectstream/cl2/stats"]
    final = stats[-1]
    assert final["cluster"]["restarts"] >= 3
    for sid in moved:
        row = final["streams"][sid]
        assert row["restarts"] >= 1 and row["gaps"] >= 1 and row["node"] == head, row
    # the smoother resumed from the retained state: the first state after the gap continues the count
    for sid in moved:
        st = [json.loads(m.payload) for m in col.messages if m.topic == f"affectstream/cl2/{sid}/state"]
        first_after = next(s for s in st if s["window"]["index"] >= gaps[sid]["window"]["index"])
        last_before = [s for s in st if s["window"]["index"] < gaps[sid]["window"]["index"]][-1]
        assert first_after["windows"] > last_before["windows"], (first_after, last_before)

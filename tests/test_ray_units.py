"""The parts of the Ray scale-out that need no cluster: placement, the ledger's fencing and write-ahead
rule, smoother resume from a retained `state`, the `--ray` argument, and that a plain run never
imports Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from affectstream.engine.distributed.placement import NodeInfo, alive_nodes, pick_node
from affectstream.engine.distributed.registry import Registry
from affectstream.engine.smoother import Smoother, SmootherSettings
from affectstream.engine.types import WindowRef, WindowResult
from affectstream.streams.contract import validate


def test_placement_spreads_by_load_per_cpu_and_avoids_suspects() -> None:
    nodes = alive_nodes(
        [
            {"NodeID": "a", "Alive": True, "Resources": {"CPU": 2.0}},
            {"NodeID": "b", "Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}},
            {"NodeID": "dead", "Alive": False, "Resources": {"CPU": 64.0}},
            {"NodeID": "nocpu", "Alive": True, "Resources": {"memory": 1.0}},
        ]
    )
    assert [n.node_id for n in nodes] == ["a", "b"]
    load: dict[str, int] = {}
    for _ in range(6):
        n = pick_node(nodes, load)
        assert n is not None
        load[n.node_id] = load.get(n.node_id, 0) + 1
    assert load == {"a": 2, "b": 4}  # streams per CPU stay equal
    assert pick_node(nodes, {}, suspect=["a"]).node_id == "b"  # type: ignore[union-attr]
    # a restart avoids its old node, but a suspect node (just lost an actor) is worse
    assert pick_node(nodes, {"a": 0, "b": 9}, avoid="a").node_id == "b"  # type: ignore[union-attr]
    assert pick_node(nodes, {}, suspect=["b"], avoid="a").node_id == "a"  # type: ignore[union-attr]
    # the only node left is used even when suspect
    assert pick_node([NodeInfo("a", 2)], {}, suspect=["a"]).node_id == "a"  # type: ignore[union-attr]
    assert pick_node([], {}) is None


def test_registry_fences_stale_epochs_and_never_allows_an_index_twice() -> None:
    r = Registry()
    e1 = r.fence("s")
    assert r.begin("s", e1, "n1") == {
        "committed": -1, "acked": -1, "commit_wall": None, "wall_t0": None, "restarts": 0,
    }  # fmt: skip
    assert r.commit("s", e1, 0) and r.commit("s", e1, 1)
    assert not r.commit("s", e1, 1)  # the same index twice
    r.ack("s", e1, 0)
    e2 = r.fence("s", restart=True)
    assert not r.commit("s", e1, 2)  # the zombie of epoch 1 is refused
    assert not r.beat("s", e1, {})
    assert r.begin("s", e1, "n1") is None
    resume = r.begin("s", e2, "n2")
    assert (
        resume is not None and resume["committed"] == 1 and resume["acked"] == 0 and resume["restarts"] == 1
    )
    assert not r.commit("s", e2, 1) and r.commit("s", e2, 5)
    r.gap("s", e2, 4)
    snap = r.snapshot()["s"]
    assert (snap["gaps"], snap["windows_lost"], snap["node"], snap["committed"]) == (1, 4, "n2", 5)
    assert r.set_t0("s", e2, 100.0) == 100.0 and r.set_t0("s", e2, 200.0) == 100.0


def _result(stream: str, k: int, label: str, p: float) -> WindowResult:
    others = (1 - p) / 6
    scores = {
        x: (p if x == label else others)
        for x in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    }
    return WindowResult(stream, WindowRef(k, float(k), k + 2.0), label, p, scores)


def test_smoother_resumes_from_the_retained_state() -> None:
    a = Smoother(SmootherSettings())
    for k in range(6):
        upd = a.update(_result("cam", k, "happy", 0.9))
    state = upd.state
    validate("state", state)
    b = Smoother(SmootherSettings())
    assert b.restore(state)
    assert b.label("cam") == "happy"
    nxt_a, nxt_b = a.update(_result("cam", 6, "sad", 0.6)), b.update(_result("cam", 6, "sad", 0.6))
    # the resumed smoother continues exactly where the first one was: same label, scores, counters, event
    assert nxt_b.state["label"] == nxt_a.state["label"] == "happy"
    assert nxt_b.state["windows"] == nxt_a.state["windows"] == 7
    assert nxt_b.state["event_id"] == state["event_id"]
    assert np.allclose(
        [nxt_b.state["scores"][k] for k in sorted(nxt_a.state["scores"])],
        [nxt_a.state["scores"][k] for k in sorted(nxt_a.state["scores"])],
        atol=2e-4,
    )
    # a cold smoother would have announced a new episode instead
    cold = Smoother(SmootherSettings()).update(_result("cam", 6, "sad", 0.6))
    assert cold.state["windows"] == 1 and [e["type"] for e in cold.events] == ["new"]
    assert not b.restore({"stream": "x"})


@pytest.mark.parametrize(
    ("value", "sources", "address", "out"),
    [
        ("local", ["a.mp4"], None, ["a.mp4"]),
        ("auto", ["a.mp4"], "auto", ["a.mp4"]),
        ("127.0.0.1:6379", ["a.mp4"], "127.0.0.1:6379", ["a.mp4"]),
        ("a.mp4", ["b.mp4"], None, ["a.mp4", "b.mp4"]),  # `run --ray a.mp4 b.mp4`
        ("cam=camera:0", [], None, ["cam=camera:0"]),
    ],
)
def test_ray_flag_address_or_source(
    value: str, sources: list[str], address: str | None, out: list[str]
) -> None:
    from affectstream.engine.cli import _ray_address

    assert _ray_address(value, sources) == (address, out)


def test_plain_run_path_never_imports_ray() -> None:
    """Without --ray, everything `run` imports (and the Ray modules' own import) leaves Ray unloaded."""
    code = textwrap.dedent(
        """
        import sys
        from affectstream.engine import cli
        args = cli.build_parser().parse_args(["run", "x.mp4", "--no-mqtt"])
        assert args.ray is None
        import affectstream.engine.app, affectstream.engine.pipeline, affectstream.engine.executor
        import affectstream.engine.distributed.launch, affectstream.engine.distributed.coordinator
        import affectstream.engine.executor.ray_backend
        assert "ray" not in sys.modules, "ray was imported"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_deploy_files_for_ray() -> None:
    """KubeRay manifest: head + CPU workers + GPU workers, token auth, no usage stats; compose: the Ray
    head and worker only with `--profile ray`, nothing published beyond loopback; Dockerfile.ray lints."""
    import shutil
    from pathlib import Path

    yaml = pytest.importorskip("yaml")
    docker = Path(__file__).resolve().parent.parent / "docker"
    rc = yaml.safe_load((docker / "kuberay" / "raycluster.yaml").read_text())
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    groups = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    gpu = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    cpu = groups["cpu-workers"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu
    head = rc["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["include-dashboard"] == "false"
    env = {e["name"]: e for e in head["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token" and "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    assert env["RAY_USAGE_STATS_ENABLED"]["value"] == "0"
    svc = yaml.safe_load((docker / "compose.yaml").read_text())["services"]
    for name in ("ray-head", "ray-worker"):
        assert svc[name]["profiles"] == ["ray"]
        assert svc[name]["environment"]["RAY_AUTH_MODE"] == "token"
        assert all(str(p).startswith("127.0.0.1:") for p in svc[name].get("ports", []))
    assert "--head" in svc["ray-head"]["command"] and "ray-head:6379" in svc["ray-worker"]["command"]
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is not None:
        r = subprocess.run(
            [exe, "--no-color", str(docker / "Dockerfile.ray")], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


async def test_shared_subscription_consumers_split_the_windows(mosquitto: object) -> None:
    """examples/mqtt_shared_consumer.py: two members of one MQTT 5 share group get every window of two
    nodes exactly once between them."""
    import asyncio
    import json
    from pathlib import Path

    import aiomqtt
    from fixtures_mqtt import HOST, make_result

    script = Path(__file__).resolve().parent.parent / "examples" / "mqtt_shared_consumer.py"
    port = mosquitto.port  # type: ignore[attr-defined]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), "--broker", f"mqtt://{HOST}:{port}", "--group", "g1", "--jsonl",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]  # fmt: skip
    try:
        for p in procs:  # wait for "subscribed"
            assert p.stderr is not None
            line = await asyncio.wait_for(p.stderr.readline(), 30)
            assert b"subscribed" in line, line
        rng = np.random.default_rng(1)
        sent = set()
        async with aiomqtt.Client(HOST, port) as c:
            for node in ("n1", "n2"):
                for k in range(10):
                    r = make_result("cam", k, rng)
                    await c.publish(f"affectstream/{node}/cam/window", json.dumps(r.to_payload()), qos=1)
                    sent.add((node, k))
        got: list[list[tuple[str, int]]] = [[], []]

        async def read(i: int) -> None:
            out = procs[i].stdout
            assert out is not None
            while True:
                line = await out.readline()
                if not line:
                    return
                d = json.loads(line)
                got[i].append((d["node"], d["window"]["index"]))

        readers = [asyncio.create_task(read(i)) for i in range(2)]
        deadline = asyncio.get_running_loop().time() + 20
        while len(got[0]) + len(got[1]) < len(sent) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        for t in readers:
            t.cancel()
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
                await p.wait()
    both = got[0] + got[1]
    assert sorted(both) == sorted(sent), "every window exactly once across the group"
    assert got[0] and got[1], "the broker shares the windows between the members"


def test_serve_ray_flag_selects_the_ray_executor() -> None:
    """`serve --ray ADDRESS`: the WebRTC node keeps ingesting; analysis goes to the Ray backend."""
    from affectstream.engine.cli import _serve_settings, build_parser
    from affectstream.engine.executor.base import make_executor
    from affectstream.engine.executor.ray_backend import RayExecutor

    args = build_parser().parse_args(["serve", "--ray", "127.0.0.1:6380", "--no-mqtt"])
    s = _serve_settings(args)
    assert (s.executor.backend, s.ray.address) == ("ray", "127.0.0.1:6380")
    ex = make_executor(s)
    assert isinstance(ex, RayExecutor) and ex.address == "127.0.0.1:6380"
    assert ex.options.actors == s.ray.actors and ex.options.max_batch == s.executor.max_batch
    local = _serve_settings(build_parser().parse_args(["serve", "--ray"]))
    assert (local.executor.backend, local.ray.address) == ("ray", None)

"""The CPU image and the compose stack, built and run for real (not only linted).

Needs a running Docker engine (CI starts one with docker/ci_daemon.sh: no bridge, no iptables), debootstrap
and docker-compose; without them every test here skips with the reason. The images are built once per
session by docker/build_local.sh (layer-cached: seconds when nothing changed, ~15 min from scratch on
2 cores, most of it compiling llama.cpp). Every container uses host networking and every service binds
127.0.0.1. Set AFFECTSTREAM_CONTAINER_TIMINGS=<file> to get the measured times as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from affectstream.streams.contract import validate
from fixtures_mqtt import collecting, free_port, retained_now

ROOT = Path(__file__).resolve().parent.parent
CPU_TAG = os.environ.get("AFFECTSTREAM_CPU_TAG", "affectstream:cpu")
MQTT_TAG = os.environ.get("AFFECTSTREAM_MQTT_TAG", "local/mosquitto:bookworm")
BASE = os.environ.get("AFFECTSTREAM_BASE", "local/debian:bookworm")
SAMPLE_IN_IMAGE = "/opt/affectstream/examples/sample.mp4"
APP_UID = "10001"

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(2400)]
TIMINGS: dict[str, float] = {}


def docker_cli() -> str | None:
    """Debian's client first: it has BuildKit built in, while another `docker` on PATH may need buildx."""
    env = os.environ.get("AFFECTSTREAM_DOCKER")
    if env:
        return env
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")


def compose_cli() -> list[str] | None:
    exe = shutil.which("docker-compose")
    if exe:
        return [exe]
    docker = docker_cli()
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def why_not() -> str | None:
    """None when containers can be built and run here, else the reason to skip."""
    docker = docker_cli()
    if docker is None:
        return "no docker client (apt-get install docker.io)"
    r = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if r.returncode != 0:
        return (
            "Docker engine not reachable (start it: bash docker/ci_daemon.sh start): "
            + (r.stderr.strip().splitlines() or ["?"])[-1]
        )
    if shutil.which("debootstrap") is None and not _has_image(docker, BASE):
        return f"no debootstrap to build the base image {BASE} (apt-get install debootstrap)"
    if compose_cli() is None:
        return "no docker-compose (apt-get install docker-compose)"
    return None


def _has_image(docker: str, tag: str) -> bool:
    return subprocess.run([docker, "image", "inspect", tag], capture_output=True).returncode == 0


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([docker_cli() or "docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {r.returncode}: {r.stderr[-2000:]}")
    return r


def _record(key: str, value: float) -> None:
    TIMINGS[key] = round(value, 2)
    out = os.environ.get("AFFECTSTREAM_CONTAINER_TIMINGS")
    if out:
        Path(out).write_text(json.dumps(TIMINGS, indent=2) + "\n")


@pytest.fixture(scope="module")
def images() -> Iterator[None]:
    reason = why_not()
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()
    env = {
        **os.environ,
        "DOCKER": docker_cli() or "docker",
        "BASE": BASE,
        "CPU_TAG": CPU_TAG,
        "MQTT_TAG": MQTT_TAG,
        "PYTHON": sys.executable,  # its pip config tells where a local torch CPU wheel and the CA bundle are
    }
    r = subprocess.run(
        ["bash", str(ROOT / "docker" / "build_local.sh")],
        env=env, capture_output=True, text=True, timeout=2400,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    _record("build_s", time.monotonic() - t0)
    _record("image_bytes", float(docker("image", "inspect", "--format", "{{.Size}}", CPU_TAG).stdout.strip()))
    yield


def test_image_is_non_root_with_healthcheck_and_volume(images: None) -> None:
    cfg = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", CPU_TAG).stdout)
    assert cfg["User"].split(":")[0] == APP_UID
    assert "/data" in (cfg.get("Volumes") or {})
    assert cfg["Healthcheck"]["Test"][-1] == "/opt/affectstream/docker/healthcheck.py"
    assert cfg["Entrypoint"] == ["/opt/affectstream/docker/entrypoint.sh"]
    r = docker("run", "--rm", "--network", "host", CPU_TAG, "id", "-u")
    assert r.stdout.strip() == APP_UID
    # torch is only needed to export the profile at build time; the image runs on ONNX Runtime CPU
    probe = (
        "import importlib.util as u, onnxruntime as o, llama_cpp, aiortc, aiohttp;"
        "print(u.find_spec('torch') is None, *o.get_available_providers())"
    )
    r = docker("run", "--rm", "--network", "host", CPU_TAG, "python3", "-c", probe)
    no_torch, *providers = r.stdout.split()
    assert no_torch == "True" and "CPUExecutionProvider" in providers, r.stdout + r.stderr
    assert not [p for p in providers if p.startswith(("CUDA", "Tensorrt"))], providers
    r = docker("run", "--rm", "--network", "host", CPU_TAG, "models", "list")
    assert "lite" in r.stdout, r.stdout + r.stderr


def test_sample_in_the_container_gives_nine_valid_windows(images: None) -> None:
    """The README's command inside the container: `run <sample> --no-mqtt --jsonl -`, profile baked in."""
    name = f"affectstream-test-{uuid.uuid4().hex[:8]}"
    cmd = [docker_cli() or "docker", "run", "--rm", "--name", name, "--network", "host", CPU_TAG,
           "run", SAMPLE_IN_IMAGE, "--no-mqtt", "--jsonl", "-"]  # fmt: skip
    t0 = time.monotonic()
    first: float | None = None
    rows: list[dict] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.strip():
                continue
            row = json.loads(line)
            rows.append(row)
            if first is None and row.get("schema") == "affectstream.window/1":
                first = time.monotonic() - t0
        err = proc.stderr.read() if proc.stderr else ""
        rc = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            docker("rm", "-f", name, check=False)
            proc.kill()
    assert rc == 0, err[-3000:]
    windows = [r for r in rows if r.get("schema") == "affectstream.window/1"]
    assert len(windows) == 9, [r.get("schema") for r in rows]
    for w in windows:
        validate("window", w)
    assert [w["window"]["index"] for w in windows] == list(range(9))
    # real models on real frames: the sample is a smiling face
    assert sum(w["label"] == "happy" for w in windows) >= 6, [w["label"] for w in windows]
    assert first is not None
    _record("first_window_s", first)
    _record("sample_run_s", time.monotonic() - t0)


def _ffmpeg_udp(port: int) -> subprocess.Popen[bytes]:
    """The sample looped as a live MPEG-TS stream to udp://127.0.0.1:port (an IP camera stand-in)."""
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
         "-i", str(ROOT / "examples" / "sample.mp4"), "-c", "copy", "-f", "mpegts",
         f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _listeners(port: int, proto: str = "t") -> list[str]:
    """Local addresses of TCP (t) or UDP (u) sockets listening on `port`."""
    r = subprocess.run(["ss", f"-Hl{proto}n", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
    return [ln.split()[3] for ln in r.stdout.splitlines() if ln.strip()]


def test_compose_stack_publishes_is_healthy_and_goes_away(images: None) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed to feed the stack a live stream (apt-get install ffmpeg)")
    project = f"affectstream-test-{uuid.uuid4().hex[:8]}"
    node = f"ci-{uuid.uuid4().hex[:6]}"
    mqtt_port, udp_port = free_port(), free_port()
    compose = [
        *(compose_cli() or []), "-f", str(ROOT / "docker" / "compose.cpu.yaml"), "-p", project,
    ]  # fmt: skip
    env = {
        **os.environ,
        "AFFECTSTREAM_MQTT_IMAGE": MQTT_TAG,
        "AFFECTSTREAM_MQTT_PORT": str(mqtt_port),
        "AFFECTSTREAM_NODE_ID": node,
        # localaddr: FFmpeg would otherwise bind the UDP port on every interface
        "AFFECTSTREAM_SOURCE": f"udp://127.0.0.1:{udp_port}?localaddr=127.0.0.1",
        "AFFECTSTREAM_CAMERA": "/dev/null",
        "AFFECTSTREAM_REASONING": "false",
        "AFFECTSTREAM_HEALTH_INTERVAL": "2s",
        "AFFECTSTREAM_BASE": BASE,
    }

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], env=env, capture_output=True, text=True, timeout=timeout)

    feed = _ffmpeg_udp(udp_port)
    t0 = time.monotonic()
    try:
        up = run("up", "-d", "--no-build")
        assert up.returncode == 0, up.stderr[-3000:]
        ids = run("ps", "-q").stdout.split()
        assert len(ids) == 2, ids
        engine = run("ps", "-q", "engine").stdout.strip()
        assert engine

        async def watch() -> tuple[list, dict[str, bytes]]:
            async with collecting(mqtt_port, f"affectstream/{node}/#", qos=1) as col:
                ok = await col.wait_for(lambda ms: sum(m.topic.endswith("/window") for m in ms) >= 3, 240)
                assert ok, f"no windows within 240 s: {[m.topic for m in col.messages][:20]}"
            return list(col.messages), await retained_now(mqtt_port, f"affectstream/{node}/#")

        msgs, retained = asyncio.run(watch())
        _record("stack_first_windows_s", time.monotonic() - t0)
        windows = [json.loads(m.payload) for m in msgs if m.topic.endswith("/window")]
        for w in windows:
            validate("window", w)
        assert retained.get(f"affectstream/{node}/available") == b"online", sorted(retained)
        states = [t for t in retained if t.endswith("/state")]
        assert states, sorted(retained)
        validate("state", json.loads(retained[states[0]]))

        # the engine's own health check (retained `available` read from inside the container)
        deadline = time.monotonic() + 120
        status = ""
        while time.monotonic() < deadline:
            status = docker("inspect", "--format", "{{.State.Health.Status}}", engine).stdout.strip()
            if status == "healthy":
                break
            time.sleep(2)
        assert status == "healthy", docker("inspect", "--format", "{{json .State.Health}}", engine).stdout
        _record("stack_healthy_s", time.monotonic() - t0)

        assert docker("exec", engine, "id", "-u").stdout.strip() == APP_UID
        # host networking: the broker listens on loopback only
        assert _listeners(mqtt_port) and all(a.startswith("127.0.0.1:") for a in _listeners(mqtt_port))
        assert [a for a in _listeners(udp_port, "u") if not a.startswith("127.0.0.1:")] == []
    finally:
        down = run("down", "-v", "--remove-orphans", timeout=180)
        os.killpg(feed.pid, signal.SIGTERM)
        feed.wait(timeout=30)
    assert down.returncode == 0, down.stderr[-2000:]
    label = f"label=com.docker.compose.project={project}"
    assert docker("ps", "-aq", "--filter", label).stdout.strip() == ""
    assert docker("volume", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert _listeners(mqtt_port) == []
    _record("stack_total_s", time.monotonic() - t0)

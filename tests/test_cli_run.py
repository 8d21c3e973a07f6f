"""`affectstream run` end to end: the real CLI process, the real lite models, a real mosquitto.

What the README promises for `run`: window results printed for the sample clip, `available` =
`online` retained, retained `state`, `window` messages that validate against the shipped schemas,
clear one-line errors for bad sources while the other streams go on, and a clean SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from affectstream.streams.contract import validate
from fixtures_mqtt import collecting, free_port, retained_now

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.mp4"


def cli_env(lite_profile: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["AFFECTSTREAM_HOME"] = str(lite_profile.parent.parent)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "affectstream.engine.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


async def test_sample_clip_publishes_contract(lite_profile: Path, mosquitto) -> None:
    env = cli_env(lite_profile)
    async with collecting(mosquitto.port, "affectstream/#", qos=1) as col:
        proc = await asyncio.to_thread(
            run_cli,
            ["run", str(SAMPLE), "--mqtt", mosquitto.url, "--node-id", "ci", "--no-reasoning"],
            env,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        # every window of the 10 s clip (hop 1 s) is printed as a line
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[sample] window")]
        assert len(lines) >= 9, proc.stdout
        assert await col.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/window")]) >= 9, 10)
    windows = [json.loads(m.payload) for m in col.on("affectstream/ci/sample/window")]
    for w in windows:
        validate("window", w)
    labels = [w["label"] for w in windows]
    # the sample is a smiling face: most windows must say so (real models, not a fixed answer)
    assert labels.count("happy") >= len(labels) * 0.7, labels
    assert all(len(w["faces"]) == 1 for w in windows[:-1])
    assert any(w["voice"] and w["voice"]["speech"] for w in windows)
    for m in col.on("/state"):
        validate("state", json.loads(m.payload))
    # a subscriber that arrives later still sees the retained state and `offline` (engine has exited)
    retained = await retained_now(mosquitto.port, "affectstream/ci/#")
    assert retained.get("affectstream/ci/available") == b"offline"
    state = json.loads(retained["affectstream/ci/sample/state"])
    assert state["label"] == "happy"
    avail = [m for m in col.on("affectstream/ci/available")]
    assert avail and avail[0].payload == b"online"


def test_bad_source_reported_others_go_on(lite_profile: Path, tmp_path: Path) -> None:
    notmedia = tmp_path / "notes.mp4"
    notmedia.write_text("this is not a video\n" * 50)
    proc = run_cli(
        ["run", str(SAMPLE), str(tmp_path / "missing.mp4"), str(notmedia), "--no-mqtt", "--no-reasoning"],
        cli_env(lite_profile),
    )
    assert proc.returncode == 1
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("affectstream:")]
    assert any("missing" in ln and "no such file" in ln for ln in err), proc.stderr
    assert any("notes" in ln for ln in err), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sum(1 for ln in proc.stdout.splitlines() if ln.startswith("[sample] window")) >= 9


def test_jsonl_stdout_and_print_config(lite_profile: Path) -> None:
    env = cli_env(lite_profile, AFFECTSTREAM_WINDOW__HOP="2.0")
    cfg = run_cli(["run", "--print-config", "--window", "3"], env)
    assert cfg.returncode == 0
    merged = json.loads(cfg.stdout)
    assert merged["window"]["hop"] == 2.0 and merged["window"]["length"] == 3.0
    proc = run_cli(["run", str(SAMPLE), "--no-mqtt", "--no-reasoning", "--jsonl", "-"], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.strip()]
    windows = [r for r in rows if r.get("schema") == "affectstream.window/1"]
    # hop 2 s over a 10 s clip
    assert 4 <= len(windows) <= 6
    assert [w["window"]["index"] for w in windows] == list(range(len(windows)))


def test_sigterm_flushes_and_goes_offline(lite_profile: Path, mosquitto) -> None:
    env = cli_env(lite_profile)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "affectstream.engine.cli",
            "run",
            str(SAMPLE),
            "--realtime",
            "--mqtt",
            mosquitto.url,
            "--node-id",
            "term",
            "--no-reasoning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:  # wait for the first window line
            line = proc.stdout.readline()
            if line.startswith("[sample] window"):
                break
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    retained = asyncio.run(retained_now(mosquitto.port, "affectstream/term/#"))
    assert retained.get("affectstream/term/available") == b"offline"
    assert "affectstream/term/sample/state" in retained


def test_embedded_broker_default(lite_profile: Path) -> None:
    """No --mqtt: an embedded broker on 127.0.0.1 serves subscribers while the engine runs."""
    port = free_port()
    env = cli_env(lite_profile, AFFECTSTREAM_MQTT__EMBEDDED_PORT=str(port))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "affectstream.engine.cli",
            "run",
            str(SAMPLE),
            "--realtime",
            "--node-id",
            "emb",
            "--no-reasoning",
            "-q",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )

    async def watch() -> list:
        for _ in range(600):  # wait until the broker accepts connections
            try:
                async with collecting(port, "affectstream/emb/#", qos=1) as col:
                    await col.wait_for(lambda ms: any(m.topic.endswith("/window") for m in ms), 60)
                    return list(col.messages)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
        return []

    try:
        msgs = asyncio.run(watch())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    topics = {m.topic for m in msgs}
    assert "affectstream/emb/available" in topics
    assert any(t.endswith("/sample/window") for t in topics)
    assert proc.returncode == 0


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:{closed}"])
def test_broker_refusing_connection_is_reported(lite_profile: Path, url: str) -> None:
    proc = run_cli(
        ["run", str(SAMPLE), "--mqtt", url.format(closed=free_port()), "--no-reasoning", "-q"],
        cli_env(lite_profile),
    )
    assert proc.returncode == 1
    assert "could not be delivered" in proc.stderr and "refused" in proc.stderr
    assert "Traceback" not in proc.stderr

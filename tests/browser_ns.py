"""Shared plumbing of the browser tests: run an end-to-end script in a loopback-only network namespace
and stop the engine process it started.

The browser tests (WebRTC call page, operator pages) each run a script under `unshare -n` so that no
packet of Chromium or ICE can leave the machine. The script writes test-artifacts/NAME.json, and the test
reads it back here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

# Debian's Chromium (never a downloaded build), headless, with no traffic of its own beyond the page.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def why_not() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return "Debian chromium is not installed (apt-get install chromium)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip (util-linux, iproute2) are needed for a loopback-only namespace"
    if shutil.which("mosquitto") is None:
        return "mosquitto is not installed"
    if os.geteuid() != 0:
        return "unshare -n needs root"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright (Python) is not installed"
    return None


def run_e2e_script(
    script: str, name: str, args: Sequence[str], timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run tests/SCRIPT with `--out test-artifacts --name NAME ARGS` in a fresh loopback-only namespace;
    returns the process and the JSON result it wrote (skips the test when browsers cannot run here)."""
    why = why_not()
    if why:
        pytest.skip(why)
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = f"ip link set lo up && exec {sys.executable} tests/{script} {' '.join(args)} --out {ARTIFACTS} --name {name}"
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert out.exists(), f"no result written (rc={proc.returncode}): {proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


def stop_process(proc: subprocess.Popen[str], timeout: float) -> tuple[int | str, str]:
    """SIGTERM, as an operator would; returns (exit code or how it was killed, the stderr it wrote)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return f"killed after {timeout:g} s", err or ""

"""End to end: `affectstream run` on the sample clip publishes `reasoning` beside `window` on mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from affectstream.engine.labels import EMOTIONS
from fixtures_mqtt import Collector

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


async def test_reasoning_messages_reference_published_windows(
    lite_profile: Path, llama_model, mosquitto
) -> None:
    env = dict(os.environ, AFFECTSTREAM_HOME=str(lite_profile.parent.parent), HF_HUB_OFFLINE="1")
    async with Collector(mosquitto.port, "affectstream/#") as col:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "affectstream.engine.cli", "run", str(ROOT / "examples/sample.mp4"),
            "--mqtt", f"mqtt://127.0.0.1:{mosquitto.port}", "--node-id", "llmtest", "--no-progress", "-q",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await asyncio.wait_for(proc.communicate(), 300)
        await asyncio.sleep(0.5)
    assert proc.returncode == 0, err.decode()[-2000:]
    windows = {}
    for m in col.on("/window"):
        p = json.loads(m.payload)
        windows[(p["stream"], p["window"]["index"])] = p
    reasoning = [json.loads(m.payload) for m in col.on("/reasoning")]
    print(f"\n{len(windows)} window messages, {len(reasoning)} reasoning messages; first: {reasoning[:1]}")
    assert windows and reasoning
    for r in reasoning:
        assert r["schema"] == "affectstream.reasoning/1"
        w = windows.get((r["stream"], r["window"]["index"]))
        assert w is not None, f"reasoning for an unpublished window {r['window']}"
        assert r["window"] == w["window"]  # same span as the window it explains
        assert r["valid"] and r["answer"] in EMOTIONS and r["think"]
        assert r["latency_ms"] > 0

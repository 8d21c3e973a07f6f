"""Headless Chromium calls `affectstream serve` inside a loopback-only network namespace.

The browser part runs in a subprocess (`unshare -n` gives it a fresh namespace with only `lo`), so no
packet of this test can leave the machine even though Chromium and ICE would normally try. The script
(tests/webrtc_browser_e2e.py) writes what it saw to test-artifacts/NAME.json and a screenshot next to
it; here we check that a label appeared in the DOM and MQTT got the stream's windows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from affectstream.engine.labels import EMOTIONS
from browser_ns import ARTIFACTS, run_e2e_script, why_not

_why_not = why_not  # the ops-page tests import it under this name


def _run_e2e(name: str, *extra: str) -> dict[str, Any]:
    proc, r = run_e2e_script("webrtc_browser_e2e.py", name, extra)
    assert proc.returncode == 0 and r["ok"], json.dumps(r, indent=1)[-4000:]
    assert r["label"] in EMOTIONS
    assert r["dom_windows"] >= 3
    assert abs(sum(r["bars"]) - 1.0) < 0.05, r["bars"]  # the per-class bars show a distribution
    assert r["mqtt_windows"] >= 1 and r["stream"] == "chromium-e2e"
    assert r["mqtt_faces"] >= 1, "the fake camera's face was never measured"
    assert r["mqtt_speech"] >= 1, "the fake microphone's speech was never heard"
    call = r["health"]["calls"]["chromium-e2e"]
    assert call["kinds"] == ["audio", "video"] and call["frames"] > 0 and call["audio_seconds"] > 1
    assert r["status_after_stop"] == "stopped"
    assert r["server_exit"] == 0, r.get("server_stderr")
    assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
    return r


@pytest.mark.browser
@pytest.mark.slow
def test_chromium_call_shows_label_and_publishes_windows(lite_profile: Path) -> None:
    _run_e2e("webrtc_browser")


@pytest.mark.browser
@pytest.mark.slow
def test_chromium_call_shows_reasoning(lite_profile: Path) -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python is not installed: the reasoning slow path cannot run")
    r = _run_e2e("webrtc_browser_reasoning", "--reasoning")
    think, _, answer = r["reasoning"].partition("→")
    assert think.strip(), r["reasoning"]
    assert answer.split("(")[0].strip().split(" ")[0] in EMOTIONS, r["reasoning"]

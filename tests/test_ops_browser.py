"""Headless Chromium on the operator pages: the timeline report, the live dashboard, the call page notice.

Each browser session runs in a subprocess inside a loopback-only network namespace (`unshare -n`, as in
tests/test_webrtc_browser.py), with the real engine (`affectstream run` / `serve`, real lite models) in
the same namespace. The script (tests/ops_browser_e2e.py) writes test-artifacts/NAME.json and NAME.png;
with AFFECTSTREAM_DOCS_SCREENSHOTS=1 the screenshots are also copied to docs/img/ for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from affectstream.engine.labels import EMOTIONS
from browser_ns import ARTIFACTS, run_e2e_script
from test_report import recording, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
DOCS_IMG = ROOT / "docs" / "img"


def _e2e(name: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    proc, r = run_e2e_script("ops_browser_e2e.py", name, args, timeout=timeout)
    shown = {k: v for k, v in r.items() if not k.startswith("metrics_")}
    assert proc.returncode == 0 and r["ok"], json.dumps(shown, indent=1)[-4000:]
    shot = ARTIFACTS / f"{name}.png"
    assert shot.stat().st_size > 10_000
    if os.environ.get("AFFECTSTREAM_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG / shot.name)
    return r


def _env(lite_profile: Path) -> dict[str, str]:
    return dict(os.environ, AFFECTSTREAM_HOME=str(lite_profile.parent.parent), PYTHONUNBUFFERED="1")


@pytest.mark.browser
@pytest.mark.slow
def test_report_of_a_real_run_in_chromium(lite_profile: Path, tmp_path: Path) -> None:
    """`run --jsonl --report` on a clip with a real face and speech; the page draws every window."""
    from media import write_clip

    clip = write_clip(tmp_path / "meeting.mp4", seconds=12.0)
    jsonl, html = tmp_path / "meeting.jsonl", tmp_path / "report.html"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "affectstream.engine.cli",
            "run",
            f"meeting={clip}",
            "--no-mqtt",
            "--no-reasoning",
            "-q",
            "--jsonl",
            str(jsonl),
            "--report",
            str(html),
        ],
        env=_env(lite_profile),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    windows = [json.loads(ln) for ln in jsonl.read_text().splitlines() if '"kind":"window"' in ln]
    assert len(windows) >= 10
    assert (tmp_path / "report.png").stat().st_size > 10_000
    r = _e2e("report", "report", "--html", str(html))
    (sec,) = r["sections"]
    assert sec["stream"] == "meeting"
    assert sec["drawn"] == sec["declared"] == len(windows)  # every window of the run, drawn once
    assert sec["areas"] >= 2 and sec["shares"] == len(EMOTIONS)
    assert 0.99 < r["band_cover"] < 1.02  # the label band tiles the whole time axis
    assert r["console"] == [] and r["external_requests"] == []


@pytest.mark.browser
def test_report_reasoning_on_hover(tmp_path: Path) -> None:
    html = tmp_path / "reasoning.html"
    from affectstream.streams.report.html import render_html
    from affectstream.streams.report.load import load_results

    html.write_text(render_html(load_results(write_jsonl(tmp_path / "r.jsonl", recording()))))
    r = _e2e("report_reasoning", "report", "--html", str(html))
    assert [s["drawn"] for s in r["sections"]] == [4, 10]
    assert [s["reasons"] for s in r["sections"]] == [0, 2]
    assert "A broad smile" in r["tooltip"] and "window 2" in r["tooltip"] and "→ happy" in r["tooltip"]
    assert r["console"] == [] and r["external_requests"] == []


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_with_three_live_streams_and_metrics(lite_profile: Path, tmp_path: Path) -> None:
    from media import write_clip
    from prometheus_client.parser import text_string_to_metric_families

    clip = write_clip(tmp_path / "cam.mp4", seconds=40.0)
    r = _e2e("dashboard", "dashboard", "--clip", str(clip), "--streams", "3", "--timeout", "150")
    cards = r["cards"]
    assert sorted(c["stream"] for c in cards) == ["desk", "door", "lobby"]
    for c in cards:
        assert c["label"] in EMOTIONS and c["windows"] >= 3 and c["drawn"] >= 2 and c["status"] == "running"
    assert any(c["faces"] == "faces 1" for c in cards), cards  # the clip's real face
    assert any(c["speech"] == "speech" for c in cards), cards  # and its real speech
    assert r["connected"] == "1" and r["moved"] is True
    assert r["metrics_without_token"] == 401
    assert [m for m in r["console"] if "error" in m.lower()] == []
    assert r["external_requests"] == [] and r["engine_exit"] == 0

    def values(text: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = s.name + json.dumps(s.labels, sort_keys=True)
                out[key] = s.value
        return out

    before, after = values(r["metrics_before"]), values(r["metrics_after"])

    def total(m: dict[str, float], name: str) -> float:
        return sum(v for k, v in m.items() if k.startswith(name + "{"))

    assert total(after, "affectstream_windows_analyzed_total") > total(
        before, "affectstream_windows_analyzed_total"
    )
    assert {k for k in after if k.startswith("affectstream_windows_analyzed_total")} == {
        f'affectstream_windows_analyzed_total{{"stream": "{s}"}}' for s in ("desk", "door", "lobby")
    }
    fast = "affectstream_fast_path_latency_seconds_count{}"
    assert after[fast] > before.get(fast, 0) and after[fast] >= 9
    assert after["affectstream_mqtt_connected{}"] == 1
    assert "affectstream_mqtt_pending_messages{}" in after
    assert any(k.startswith("affectstream_queue_depth{") for k in after)
    assert any(k.startswith("affectstream_model_runtime_info{") for k in after)
    assert after["process_resident_memory_bytes{}"] > 50e6


@pytest.mark.browser
@pytest.mark.slow
def test_call_page_shows_notice_and_asks_consent(lite_profile: Path) -> None:
    notice = "Emotion analysis active in this room (test notice)."
    r = _e2e("callpage", "callpage", "--notice", f"'{notice}'")
    assert r["notice"] == notice
    assert r["consent_visible"] is True
    assert r["start_disabled_before"] is True and r["start_disabled_after"] is False
    assert r["active_hidden"] is True and r["server_exit"] == 0
    assert r["serve_metrics"] is True and r["serve_dashboard_connected"] is True
    assert [m for m in r["console"] if "error" in m.lower()] == []

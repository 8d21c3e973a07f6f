"""Headless Chromium looks at the operator pages: the timeline report and the live dashboard.

Meant to run inside a loopback-only network namespace (tests/test_ops_browser.py runs
`unshare -n sh -c 'ip link set lo up && python3 tests/ops_browser_e2e.py ...'`), so nothing can leave
127.0.0.1. Writes OUT/NAME.json (what the page showed) and OUT/NAME.png (a screenshot).

    report    --html FILE        open the report from disk; count drawn windows, hover a reasoning marker,
                                 record console errors and every request the page tried to make
    dashboard --clip FILE --streams N   start `affectstream run` on N copies of the clip (real time, real
                                 lite models, a real mosquitto) with `--http`, open its dashboard, wait
                                 until N streams show windows, scrape /metrics before and after
    callpage  --notice TEXT      start `affectstream serve`; the call page shows the notice and keeps
                                 Start disabled until the consent box is ticked
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from browser_ns import CHROMIUM, CHROMIUM_FLAGS, stop_process  # noqa: E402

FLAGS = CHROMIUM_FLAGS


async def _browser(p: Any) -> Any:
    profile = tempfile.mkdtemp(prefix="affectstream-chromium-")
    return await p.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1280, "height": 900}
    )


def _watch(page: Any, console: list[str], requests: list[str]) -> None:
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))


async def report(html: Path, shot: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    console: list[str] = []
    requests: list[str] = []
    out: dict[str, Any] = {}
    async with async_playwright() as p:
        ctx = await _browser(p)
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            _watch(page, console, requests)
            await page.goto(html.resolve().as_uri())
            await page.wait_for_load_state("load")
            out["title"] = await page.title()
            out["sections"] = await page.evaluate(
                "[...document.querySelectorAll('section.stream')].map(s => ({stream: s.dataset.stream, "
                "declared: Number(s.dataset.windows), drawn: s.querySelectorAll('svg rect.win').length, "
                "areas: s.querySelectorAll('svg polygon.area').length, "
                "reasons: s.querySelectorAll('svg circle.reason').length, "
                "shares: s.querySelectorAll('tr.share').length}))"
            )
            # the label band is real geometry: the drawn rects tile the plot width without gaps
            out["band_cover"] = await page.evaluate(
                "(() => { const s = document.querySelector('svg.timeline'); const rs = [...s.querySelectorAll"
                "('rect.win')]; const w = rs.reduce((a, r) => a + r.width.baseVal.value, 0); return w / "
                "(s.viewBox.baseVal.width - 90); })()"
            )
            marker = page.locator("svg circle.reason").first
            if await marker.count():
                await marker.hover()
                await page.wait_for_timeout(200)
                out["tooltip"] = await page.evaluate(
                    "(() => { const t = document.getElementById('tip'); return t.style.display === 'block' "
                    "? t.textContent : ''; })()"
                )
            await page.mouse.move(5, 5)
            await page.screenshot(path=str(shot), full_page=True)
        finally:
            await ctx.close()
    out["console"] = console
    out["requests"] = requests
    out["external_requests"] = [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
    out["ok"] = bool(out["sections"]) and not out["external_requests"]
    return out


def _scrape(url: str, token: str | None) -> str:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


async def dashboard(url: str, n: int, token: str | None, shot: Path, timeout_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    console: list[str] = []
    requests: list[str] = []
    out: dict[str, Any] = {}
    base = url.split("/dashboard", 1)[0]
    async with async_playwright() as p:
        ctx = await _browser(p)
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            _watch(page, console, requests)
            out["metrics_before"] = _scrape(base + "/metrics", token)
            await page.goto(url)
            t0 = time.monotonic()
            await page.wait_for_function(
                f"[...document.querySelectorAll('.card')].filter(c => Number(c.dataset.windows) >= 3 && "
                f"Number(c.dataset.drawn || 0) >= 2).length >= {n}",
                timeout=timeout_s * 1000,
            )
            out["seconds_to_streams"] = round(time.monotonic() - t0, 1)
            out["connected"] = await page.evaluate("document.body.dataset.connected")
            out["cards"] = await page.evaluate(
                "[...document.querySelectorAll('.card')].map(c => ({stream: c.dataset.stream, "
                "windows: Number(c.dataset.windows), label: c.querySelector('.label').textContent, "
                "status: c.dataset.status, faces: c.querySelector('.faces').textContent, "
                "speech: c.querySelector('.speech').textContent, drawn: Number(c.dataset.drawn || 0)}))"
            )
            w0 = {c["stream"]: c["windows"] for c in out["cards"]}
            await page.wait_for_function(
                f"[...document.querySelectorAll('.card')].some(c => Number(c.dataset.windows) > "
                f"({json.dumps(w0)})[c.dataset.stream])",
                timeout=30_000,
            )
            out["moved"] = True
            out["messages"] = int(await page.evaluate("document.body.dataset.messages"))
            await page.wait_for_timeout(300)
            await page.screenshot(path=str(shot), full_page=True)
            await asyncio.sleep(1.5)  # at least one more stats message (interval set by the test)
            out["metrics_after"] = _scrape(base + "/metrics", token)
            # the data routes refuse a viewer without the token
            try:
                _scrape(base + "/metrics", None if token else "x")
                out["metrics_without_token"] = 200
            except urllib.error.HTTPError as e:
                out["metrics_without_token"] = e.code
        finally:
            await ctx.close()
    out["console"] = console
    out["external_requests"] = [u for u in requests if not u.startswith(base)]
    out["ok"] = len(out.get("cards", [])) >= n
    return out


def start_engine(clip: Path, n: int, token: str, mqtt_url: str) -> tuple[subprocess.Popen[str], str]:
    from fixtures_models import test_home

    env = dict(
        os.environ,
        AFFECTSTREAM_HOME=str(test_home()),
        PYTHONUNBUFFERED="1",
        AFFECTSTREAM_MQTT__STATS_INTERVAL="1",
        AFFECTSTREAM_EXECUTOR__BACKEND="thread",
    )
    sources = [f"{name}={clip}" for name in ("door", "lobby", "desk", "hall", "yard")[:n]]
    cmd = [sys.executable, "-m", "affectstream.engine.cli", "run", *sources, "--realtime", "-q",
           "--no-reasoning", "--mqtt", mqtt_url, "--node-id", "ops-e2e", "--http", "0", f"--token={token}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 180
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "dashboard at " in line:
            return proc, line.split("dashboard at ", 1)[1].split(" ", 1)[0].strip()
    proc.kill()
    raise RuntimeError(f"engine did not start: {''.join(lines)[-2000:]}")


def run_dashboard(clip: Path, n: int, shot: Path, timeout_s: float) -> dict[str, Any]:
    from fixtures_mqtt import Mosquitto

    mosq = Mosquitto()
    engine = None
    result: dict[str, Any] = {"ok": False}
    try:
        mosq.start()
        token = secrets.token_urlsafe(12)
        engine, url = start_engine(clip, n, token, mosq.url)
        result = asyncio.run(dashboard(url, n, token, shot, timeout_s))
    finally:
        if engine is not None:
            result["engine_exit"], err = stop_process(engine, 60)
            result["engine_stderr"] = err[-2000:]
        with contextlib.suppress(Exception):
            mosq.cleanup()
    return result


async def callpage(notice: str, shot: Path) -> dict[str, Any]:
    from fixtures_models import test_home
    from playwright.async_api import async_playwright

    env = dict(os.environ, AFFECTSTREAM_HOME=str(test_home()), PYTHONUNBUFFERED="1",
               AFFECTSTREAM_PRIVACY__NOTICE=notice)  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "affectstream.engine.cli",
        "serve",
        "--port",
        "0",
        "--no-mqtt",
        "--no-reasoning",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out: dict[str, Any] = {"ok": False}
    console: list[str] = []
    requests: list[str] = []
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "serving calls at " in line:
                url = line.split("serving calls at ", 1)[1].strip()
                break
        if url is None:
            raise RuntimeError("serve did not start")
        async with async_playwright() as p:
            ctx = await _browser(p)
            try:
                page = ctx.pages[0] if ctx.pages else await ctx.new_page()
                _watch(page, console, requests)
                await page.goto(url)
                await page.wait_for_function("document.body.dataset.consent === 'required'", timeout=20_000)
                out["notice"] = await page.text_content("#notice")
                out["consent_visible"] = await page.is_visible("#consent")
                out["start_disabled_before"] = await page.is_disabled("#start")
                await page.screenshot(path=str(shot), full_page=True)
                await page.check("#consent")
                out["start_disabled_after"] = await page.is_disabled("#start")
                out["active_hidden"] = not await page.is_visible("#active")
                # the dashboard and /metrics share the call page's port
                base = url.split("?", 1)[0].rstrip("/")
                out["serve_metrics"] = "affectstream_build_info" in _scrape(base + "/metrics", None)
                await page.goto(base + "/dashboard")
                await page.wait_for_function("document.body.dataset.connected === '1'", timeout=20_000)
                out["serve_dashboard_connected"] = True
            finally:
                await ctx.close()
    finally:
        out["server_exit"], _ = stop_process(proc, 30)
    out["console"] = console
    out["ok"] = out.get("notice") == notice
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["report", "dashboard", "callpage"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--html", type=Path)
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--notice", default="Emotion analysis active (test notice).")
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shot = args.out / f"{args.name}.png"
    result: dict[str, Any] = {"ok": False}
    try:
        if args.mode == "report":
            result = asyncio.run(report(args.html, shot))
        elif args.mode == "callpage":
            result = asyncio.run(callpage(args.notice, shot))
        else:
            result = run_dashboard(args.clip, args.streams, shot, args.timeout)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())

"""End to end in headless Chromium: the page calls `affectstream serve`, results show up in the DOM and
on MQTT. Meant to run inside a loopback-only network namespace (tests/test_webrtc_browser.py does
`unshare -n sh -c 'ip link set lo up && python3 tests/webrtc_browser_e2e.py --out DIR'`), so neither
the browser nor the server can reach anything but 127.0.0.1.

Chromium's fake camera and microphone play `.y4m`/`.wav` files made here with ffmpeg from real
assets (the astronaut photo panning, the Beckett recording). Writes DIR/webrtc_browser.json (what was
observed) and DIR/webrtc_browser.png (a screenshot of the page mid-call). Exit code 0 = the page
showed a label and MQTT received windows for that stream.
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
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from browser_ns import CHROMIUM, CHROMIUM_FLAGS, stop_process  # noqa: E402
from fixtures_models import test_home  # noqa: E402
from fixtures_mqtt import Mosquitto, collecting, free_port  # noqa: E402
from media import write_clip  # noqa: E402

FLAGS = [
    *CHROMIUM_FLAGS,
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def make_fake_devices(folder: Path, seconds: float = 6.0) -> tuple[Path, Path]:
    """A .y4m of the real face (640x480, 15 fps) and a 48 kHz .wav of the real speech."""
    clip = write_clip(folder / "face.mp4", seconds=seconds, fps=15, size=(512, 512))
    y4m, wav = folder / "face.y4m", folder / "speech.wav"
    ff = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip)]
    subprocess.run(
        [*ff, "-an", "-vf", "scale=640:480", "-pix_fmt", "yuv420p", "-r", "15", str(y4m)],
        check=True,
        timeout=120,
    )
    subprocess.run([*ff, "-vn", "-ar", "48000", "-ac", "2", str(wav)], check=True, timeout=120)
    return y4m, wav


def start_server(port: int, token: str, mqtt_url: str, reasoning: bool) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, AFFECTSTREAM_HOME=str(test_home()), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "affectstream.engine.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port), f"--token={token}", "--mqtt", mqtt_url]  # fmt: skip
    if not reasoning:
        cmd.append("--no-reasoning")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "serving calls at " in line:
            return proc, line.split("serving calls at ", 1)[1].strip()
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read()[-2000:] if proc.stderr else ''}")


async def drive(
    url: str, y4m: Path, wav: Path, shot: Path, mqtt_port: int, min_windows: int, reasoning: bool
) -> dict:
    from playwright.async_api import async_playwright

    result: dict = {"url_has_token": "token=" in url}
    console: list[str] = []
    async with collecting(mqtt_port, "affectstream/#") as mq, async_playwright() as p:
        profile = tempfile.mkdtemp(prefix="affectstream-chromium-")
        ctx = await p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                *FLAGS,
                f"--use-file-for-fake-video-capture={y4m}",
                f"--use-file-for-fake-audio-capture={wav}",
            ],
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            await page.goto(url + ("&" if "?" in url else "?") + "autostart=1&consent=1&stream=chromium-e2e")
            t0 = time.monotonic()
            await page.wait_for_function(
                f"Number(document.body.dataset.windows) >= {min_windows}", timeout=90_000
            )
            result["seconds_to_windows"] = round(time.monotonic() - t0, 1)
            result["label"] = (await page.text_content("#label") or "").strip()
            result["meta"] = (await page.text_content("#meta") or "").strip()
            result["status"] = (await page.text_content("#status") or "").strip()
            result["dom_windows"] = int(await page.evaluate("document.body.dataset.windows"))
            result["stream"] = await page.evaluate("document.body.dataset.stream")
            result["bars"] = await page.evaluate(
                "[...document.querySelectorAll('.bars .val')].map(e => Number(e.textContent))"
            )
            if reasoning:
                await page.wait_for_function(
                    "document.getElementById('reasoning').textContent.includes('→')", timeout=90_000
                )
                result["reasoning"] = await page.text_content("#reasoning")
            health_url = url.replace("/?", "/health?") if "?" in url else url + "health"
            result["health"] = await page.evaluate(f"fetch({json.dumps(health_url)}).then(r => r.json())")
            await page.wait_for_timeout(500)  # let the timeline draw the last window
            await page.screenshot(path=str(shot), full_page=True)
            suffix = f"/{result['stream']}/window"
            await mq.wait_for(lambda ms: any(m.topic.endswith(suffix) for m in ms), 10)
            wins = [json.loads(m.payload) for m in mq.messages if m.topic.endswith(suffix)]
            result["mqtt_windows"] = len(wins)
            result["mqtt_labels"] = sorted({w["label"] for w in wins})
            result["mqtt_faces"] = sum(1 for w in wins if w.get("faces"))
            result["mqtt_speech"] = sum(1 for w in wins if (w.get("voice") or {}).get("speech"))
            await page.click("#stop")
            await page.wait_for_timeout(300)
            result["status_after_stop"] = (await page.text_content("#status") or "").strip()
        finally:
            result["console"] = console[-20:]
            await ctx.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("test-artifacts"))
    ap.add_argument("--name", default="webrtc_browser", help="artifact names: NAME.json, NAME.png")
    ap.add_argument("--min-windows", type=int, default=3)
    ap.add_argument("--reasoning", action="store_true", help="run the LLM slow path and wait for its text")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the fake camera/mic loop")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"ok": False}
    shot = args.out / f"{args.name}.png"
    work = Path(tempfile.mkdtemp(prefix="affectstream-e2e-"))
    mosq = Mosquitto()
    server = None
    try:
        y4m, wav = make_fake_devices(work, args.seconds)
        mosq.start()
        token = secrets.token_urlsafe(16)
        server, url = start_server(free_port(), token, mosq.url, args.reasoning)
        result.update(asyncio.run(drive(url, y4m, wav, shot, mosq.port, args.min_windows, args.reasoning)))
        result["ok"] = bool(result.get("label")) and result.get("mqtt_windows", 0) > 0
        if args.reasoning:
            result["ok"] = result["ok"] and "→" in (result.get("reasoning") or "")
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        if server is not None:
            result["server_exit"], err = stop_process(server, 30)
            result["server_stderr"] = err[-3000:]
        with contextlib.suppress(Exception):
            mosq.cleanup()
        (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

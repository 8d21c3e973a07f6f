"""Responsible-use guarantees, end to end with the real engine: no frames or audio are ever stored or
published, and `privacy.retention_hours` removes affectstream's own old outputs and nothing else.

The run writes JSONL and a report into a folder that also holds an old affectstream output and files
that are not affectstream's; afterwards the folder holds exactly the requested outputs plus the foreign
files, and neither the files nor any MQTT message carries pixels or samples.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fixtures_mqtt import collecting

MEDIA_KEYS = {
    "image",
    "images",
    "frame",
    "frames",
    "audio",
    "samples",
    "pcm",
    "jpeg",
    "jpg",
    "png",
    "pixels",
    "wav",
}
BLOB = re.compile(r"[A-Za-z0-9+/=]{2000,}")  # a base64 blob of any size worth hiding media in


def _media_keys(obj: Any, path: str = "") -> list[str]:
    """Paths that could hold media: a media-named key holding text or a list (counters are fine), and
    any list of more than 64 numbers (scores are dicts, boxes have 4 numbers; pixels and samples do not)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).lower() in MEDIA_KEYS and isinstance(v, (str, list, bytes)):
                found.append(f"{path}/{k}")
            found += _media_keys(v, f"{path}/{k}")
    elif isinstance(obj, list):
        if sum(isinstance(v, (int, float)) for v in obj) > 64:
            found.append(f"{path}[{len(obj)} numbers]")
        for i, v in enumerate(obj):
            found += _media_keys(v, f"{path}/{i}")
    return found


def _assert_no_media(text: str, where: str) -> None:
    assert len(text) < 32_000, f"{where}: {len(text)} bytes is more than a result needs"
    assert not BLOB.search(text), f"{where}: carries a long base64-like blob"
    obj = json.loads(text)
    assert _media_keys(obj) == [], f"{where}: {_media_keys(obj)}"


async def test_run_stores_and_publishes_no_media_and_applies_retention(
    lite_profile: Path, mosquitto: Any, tmp_path: Path
) -> None:
    from media import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=6.0)
    out = tmp_path / "out"
    out.mkdir()
    old_ours = out / "monday.jsonl"
    old_ours.write_text('{"kind":"window","schema":"affectstream.window/1","stream":"x","ts":1}\n')
    old_report = out / "monday.html"
    old_report.write_text('<html><meta name="generator" content="affectstream-report"></html>')
    foreign = [out / "notes.jsonl", out / "index.html", out / "photo.png"]
    foreign[0].write_text('{"note": "not affectstream"}\n')
    foreign[1].write_text("<html>someone else's page</html>")
    foreign[2].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    week_ago = time.time() - 7 * 24 * 3600
    for p in (old_ours, old_report, *foreign):
        os.utime(p, (week_ago, week_ago))

    env = dict(os.environ, AFFECTSTREAM_HOME=str(lite_profile.parent.parent), PYTHONUNBUFFERED="1")
    env["AFFECTSTREAM_PRIVACY__RETENTION_HOURS"] = "24"
    cmd = [sys.executable, "-m", "affectstream.engine.cli", "run", f"cam={clip}", "--mqtt", mosquitto.url,
           "--node-id", "privacy", "--no-reasoning", "-q", "--jsonl", "out/run.jsonl", "--report", "out/run.html"]  # fmt: skip
    before = {p for p in tmp_path.rglob("*")}
    async with collecting(mosquitto.port, "affectstream/#", qos=1) as col:
        proc = await asyncio.to_thread(
            subprocess.run, cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        await col.wait_for(lambda ms: sum(m.topic.endswith("/window") for m in ms) >= 5, 10)
        messages = list(col.messages)

    # the folder: the requested outputs appeared, our week-old outputs went, nobody else's file was touched
    created = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} - {
        p.relative_to(tmp_path).as_posix() for p in before
    }
    assert created == {"out/run.jsonl", "out/run.html", "out/run.png"}, created
    assert not old_ours.exists() and not old_report.exists()
    assert all(p.exists() for p in foreign)

    lines = (out / "run.jsonl").read_text().splitlines()
    assert sum('"kind":"window"' in ln for ln in lines) >= 5
    for i, ln in enumerate(lines):
        _assert_no_media(ln, f"run.jsonl line {i + 1}")
    windows = [m for m in messages if m.topic.endswith("/window")]
    assert windows and all(json.loads(m.payload)["faces"] for m in windows[1:])  # a face was analysed ...
    for m in messages:
        payload = m.payload.decode() if isinstance(m.payload, bytes) else str(m.payload)
        if payload in ("online", "offline"):
            continue
        _assert_no_media(payload, m.topic)  # ... yet no message carries it
    page = (out / "run.html").read_text()
    assert "data:image" not in page and not BLOB.search(page)


async def test_call_offers_need_consent_when_configured(lite_analyzer: Any) -> None:
    """With `privacy.consent`, the server refuses an offer that does not say the caller agreed."""
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection
    from fixtures_webrtc import FaceVideoTrack, call, webrtc_server

    notice = "Emotion analysis active (consent test)."
    async with webrtc_server(lite_analyzer, consent=True, notice=notice) as srv:
        async with aiohttp.ClientSession() as s, s.get(f"{srv.base_url}config") as r:
            assert (await r.json())["privacy"] == {"notice": notice, "consent": True}
        try:
            await call(srv.base_url, [FaceVideoTrack()], stream="no-consent")
            raise AssertionError("an offer without consent was answered")
        except RuntimeError as e:
            assert "403" in str(e) and "consent" in str(e)
        assert "no-consent" not in srv.engine.streams

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTrack(FaceVideoTrack())
            await pc.setLocalDescription(await pc.createOffer())
            body = {"sdp": pc.localDescription.sdp, "type": "offer", "stream": "agreed", "consent": True}
            async with aiohttp.ClientSession() as s, s.post(f"{srv.base_url}offer", json=body) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["stream"] == "agreed"
        finally:
            await pc.close()

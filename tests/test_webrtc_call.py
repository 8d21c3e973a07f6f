"""Calls from in-process aiortc peers (loopback-only ICE) through the real engine and a real broker.

A caller sends a clip made from a real face and real speech; the window results must come back on
its data channel and reach mosquitto on the stream's `window` topic. Video-only and audio-only
callers, and a resolution change mid-call, go through the same path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from affectstream.engine.labels import EMOTIONS
from fixtures_mqtt import Mosquitto, collecting
from fixtures_webrtc import FaceVideoTrack, SpeechAudioTrack, call, webrtc_server


async def test_clip_call_results_on_datachannel_and_mqtt(
    tmp_path: Path, lite_analyzer, mosquitto: Mosquitto
) -> None:
    from affectstream.streams.sinks.mqtt import MqttSink
    from aiortc.contrib.media import MediaPlayer
    from media import write_clip

    clip = write_clip(tmp_path / "call.mp4", seconds=5.0, fps=15)
    sink = MqttSink(mosquitto.url, node_id="webrtc-test")
    async with (
        collecting(mosquitto.port, "affectstream/#") as mq,
        webrtc_server(lite_analyzer, [sink]) as srv,
    ):
        player = MediaPlayer(str(clip))
        caller = await call(srv.base_url, [player.video, player.audio], stream="clip-1")
        try:
            assert await caller.wait_windows(3, timeout=30), f"windows: {len(caller.windows)}"
            assert await mq.wait_for(
                lambda ms: len([m for m in ms if m.topic.endswith("clip-1/window")]) >= 3, 10
            )
        finally:
            await caller.close()
        hello = caller.of("affectstream.webrtc.hello/")
        assert hello and hello[0]["stream"] == "clip-1" and hello[0]["reasoning"] is False
        wins = caller.windows
        assert all(w["stream"] == "clip-1" and w["label"] in EMOTIONS for w in wins)
        assert any(w["faces"] for w in wins), "the astronaut's face was never found"
        assert any(w["voice"] and w["voice"]["speech"] for w in wins), "the speech was never heard"
        idx = [w["window"]["index"] for w in wins]
        assert idx == sorted(idx)
        # every window the caller saw also went to MQTT (the broker gets the flushed tail as well)

        def mq_windows(ms: list) -> list[dict]:
            return [json.loads(m.payload) for m in ms if m.topic.endswith("/clip-1/window")]

        want = set(idx)
        assert await mq.wait_for(lambda ms: want <= {w["window"]["index"] for w in mq_windows(ms)}, 10)
        mq_wins = mq_windows(mq.messages)
        assert all(w["stream"] == "clip-1" and w["label"] in EMOTIONS for w in mq_wins)
        # the caller hung up: the server tears the peer down and forgets the stream
        assert await srv.wait_peers(0, timeout=15), srv.server.close_reasons
        assert "clip-1" not in srv.engine.streams


@pytest.mark.parametrize("kinds", ["video", "audio"])
async def test_single_track_callers(lite_analyzer, kinds: str) -> None:
    track = FaceVideoTrack(fps=15) if kinds == "video" else SpeechAudioTrack()
    async with webrtc_server(lite_analyzer) as srv:
        caller = await call(srv.base_url, [track], stream=f"only-{kinds}")
        try:
            assert await caller.wait_windows(2, timeout=20), f"windows: {len(caller.windows)}"
        finally:
            await caller.close()
        w = caller.windows[-1]
        if kinds == "video":
            assert w["faces"], "video-only: the face must be measured"
            assert not (w["voice"] and w["voice"]["speech"])
        else:
            assert w["faces"] == []
            assert any(x["voice"] and x["voice"]["speech"] for x in caller.windows)


async def test_resolution_change_mid_call(lite_analyzer) -> None:
    # Chromium's ramp-up does exactly this: start small, switch to the full size a few seconds in.
    video = FaceVideoTrack(fps=15, sizes=[(0.0, (320, 240)), (2.0, (640, 480))])
    async with webrtc_server(lite_analyzer) as srv:
        caller = await call(srv.base_url, [video, SpeechAudioTrack()], stream="resize")
        try:
            assert await caller.wait_windows(4, timeout=30), f"windows: {len(caller.windows)}"
            peer = srv.server.peers["resize"]
            assert peer.source.resolution_changes >= 1
            assert peer.source.frame_size == (640, 480)
            st = srv.engine.streams["resize"]
            assert st.status == "running"
            assert st.windower.stats.resolution_changes >= 1
        finally:
            await caller.close()
        late = caller.windows[-1]
        assert late["faces"], "the face must still be found after the size change"

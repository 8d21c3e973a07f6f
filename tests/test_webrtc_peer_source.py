"""The per-caller source on its own (no network): real aiortc media tracks feed it directly.

Checks the promises the engine relies on: a consumer that stops reading never makes media pile up
(the oldest frames are dropped and counted), video is converted at most at `max_video_fps`, browser
audio (48 kHz stereo s16) becomes 16 kHz mono float32 on a contiguous clock, and closing ends iteration.
"""

from __future__ import annotations

import asyncio

import numpy as np
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.web.peer import PeerSource
from fixtures_webrtc import FaceVideoTrack, SpeechAudioTrack


async def test_unread_source_stays_bounded_and_counts_drops() -> None:
    src = PeerSource("s", max_video_fps=15, max_queue=4)
    src.attach(FaceVideoTrack(fps=30, sizes=[(0.0, (320, 240))]))
    src.attach(SpeechAudioTrack())
    await asyncio.sleep(2.0)  # nobody reads: a stalled engine
    c = src.counters()
    assert c["video_received"] >= 40
    assert 0.35 < c["video_skipped"] / c["video_received"] < 0.65  # 30 fps sent, 15 fps converted
    assert c["dropped_frames"] > 0
    buffered = list(src._items)
    assert sum(isinstance(i, VideoFrame) for i in buffered) <= 4
    assert len(buffered) <= 4 * 16
    await src.close()


async def test_audio_is_16k_mono_on_a_contiguous_clock_and_close_ends() -> None:
    src = PeerSource("a")
    src.attach(SpeechAudioTrack())
    got: list[AudioChunk] = []

    async def read() -> None:
        async for item in src:
            assert isinstance(item, AudioChunk)
            got.append(item)

    reader = asyncio.create_task(read())
    await asyncio.sleep(1.5)
    await src.close()
    await asyncio.wait_for(reader, 2)  # closing ends the iteration (the engine then flushes)
    assert len(got) > 30
    assert all(c.sample_rate == 16000 and c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in got)
    total = sum(len(c.samples) for c in got) / 16000
    assert abs((got[-1].end - got[0].ts) - total) < 0.02  # no gaps or overlaps between chunks
    assert 0.05 < float(np.abs(np.concatenate([c.samples for c in got])).max()) <= 1.0  # real speech
    assert src.stats.dropped_frames == 0

"""Early frames: a live stream's sampled frames are analysed before their window closes.

What must hold for the capacity gain to be free:
- the windower hands out each chosen frame once, before the window that holds it is emitted (all but
  the frame of its last midpoint, which settles at the close);
- a window whose frames were analysed early gets exactly the result it gets without (same cache, same
  models, track ids still assigned at the window) and still carries facial actions;
- through the real pipeline and the process backend, a live stream's frames really go early (counted),
  and the results equal those of the same run with early frames off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.config import load_settings
from affectstream.engine.lite import LiteAnalyzer
from affectstream.engine.types import AudioChunk, VideoFrame, Window
from affectstream.streams.windower import Windower
from media import astronaut_bgr, moving_frames
from pipeline_helpers import CaptureSink, assert_same_windows

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample.mp4"


def test_windower_hands_out_each_chosen_frame_once_before_its_window() -> None:
    w = Windower("s", length=2.0, hop=1.0, n_frames=8, track_settled=True)
    img = np.zeros((4, 4, 3), np.uint8)
    handed: dict[int, int] = {}  # frame index -> push count when handed out
    windows: list[tuple[int, Window]] = []
    fps = 15.0
    for i in range(int(8 * fps)):
        ts = i / fps
        for item in (VideoFrame(ts, img, i), AudioChunk(ts, np.zeros(int(16000 / fps), np.float32))):
            for win in w.push(item):
                windows.append((i, win))
        for f in w.take_settled():
            assert f.index not in handed, "a frame was handed out twice"
            handed[f.index] = i
    assert w.tracks_settled and len(windows) >= 6
    tail = w.flush()  # the windows still open at the end hold the newest handed-out frames
    in_windows = {f.index for _, win in windows for f in win.frames} | {
        f.index for t in tail for f in t.frames
    }
    assert set(handed) <= in_windows  # nothing handed out that no window holds
    for at, win in windows:
        early = [f for f in win.frames[:-1] if f.index in handed]
        assert len(early) == len(win.frames) - 1, win.index  # all but the last midpoint's frame
        assert all(handed[f.index] <= at for f in early)  # handed out no later than the close
    # without tracking nothing is recorded (no cost, no memory)
    plain = Windower("p", length=2.0, hop=1.0, n_frames=8)
    plain.push(VideoFrame(0.0, img, 0))
    plain.push(VideoFrame(0.5, img, 1))
    assert not plain.tracks_settled and plain.take_settled() == []


def _windows(frames: list[np.ndarray]) -> list[Window]:
    fps = 4.0
    out = []
    for k in range(0, len(frames) - 7, 4):
        vf = [VideoFrame((k + j) / fps, frames[k + j], k + j) for j in range(8)]
        out.append(Window("astro", k // 4, k / fps, k / fps + 2.0, vf, np.zeros(0, np.float32)))
    return out


def test_early_analysis_gives_the_window_the_same_result(lite_profile: Path) -> None:
    wins = _windows(moving_frames(astronaut_bgr(), 24))
    plain = LiteAnalyzer.from_profile(lite_profile)
    early = LiteAnalyzer.from_profile(lite_profile)
    try:
        ref = [plain.analyze(w) for w in wins]
        got = []
        for w in wins:
            early.prefetch(w.stream_id, w.frames[:-1])
            got.append(early.analyze(w))
        info = early.runtime_info()
        assert info["frames"]["early"] > 0
        assert early.frames_processed == plain.frames_processed  # each frame analysed once either way
        for a, b in zip(ref, got, strict=True):
            assert b.label == a.label
            for e, v in a.scores.items():
                assert b.scores[e] == pytest.approx(v, abs=1e-6)
            assert [(f.track, f.box) for f in b.faces] == [(f.track, f.box) for f in a.faces]
            assert len(b.faces) == 1
            if early.mesh is not None:
                assert b.faces[0].actions, "an early-analysed window lost its facial actions"
        # at the close only the last frame of each window was new: everything else went early
        assert early.frames_processed - info["frames"]["early"] == len(wins)
        assert info["frame_cache"]["hits"] > plain.runtime_info()["frame_cache"]["hits"]
    finally:
        plain.close()
        early.close()


async def _run_live(lite_profile: Path, early: bool) -> tuple[dict[tuple[str, int], object], dict]:
    from affectstream.engine.executor.base import AnalyzerFactory, make_executor
    from affectstream.engine.pipeline import Pipeline
    from affectstream.streams.sources.file import FileSource

    settings = load_settings(
        None,
        {
            "progress": False,
            "realtime": True,
            "executor.backend": "process",
            "executor.workers": 2,
            "executor.stagger": False,
            "executor.early_frames": early,
        },
    )
    ex = make_executor(
        settings, AnalyzerFactory.from_settings(settings, profile_dir=str(lite_profile), threads=1)
    )
    await ex.start()
    sink = CaptureSink()
    try:
        pipe = Pipeline(settings, None, [sink], node_id="t", executor=ex)
        await pipe.run([FileSource(SAMPLE, f"s{i}", realtime=True, speed=2.0) for i in range(2)])
        stats = ex.stats()
    finally:
        await ex.close()
    for st in pipe.streams.values():
        assert st.live and st.status == "finished" and st.windows_dropped == 0
    return {(r.stream, r.window.index): r for _, r in sink.windows}, stats


@pytest.mark.timeout(300)
async def test_live_streams_send_frames_early_to_the_workers(lite_profile: Path) -> None:
    got, stats = await _run_live(lite_profile, True)
    ref, ref_stats = await _run_live(lite_profile, False)
    assert ref_stats["early_frames"] == 0
    assert stats["early_frames"] > 0  # frames really went to the workers before their windows
    assert stats["early_frames"] + stats["early_dropped"] > 0
    assert assert_same_windows(ref, got) > 0  # faces compared: not over empty results

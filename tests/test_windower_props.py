"""Property tests of the windower's sampling (hypothesis): R1-Omni's midpoint rule, monotone frames,
frames inside their window, N frames whenever the window holds any, audio of exactly the window's span."""

from __future__ import annotations

import math

import numpy as np
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.windower import Windower, nearest_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SR = 16_000
IMG = np.zeros((2, 2, 3), np.uint8)

grid = st.tuples(
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),  # length
    st.sampled_from([0.25, 0.5, 1.0, 2.0]),  # hop
    st.integers(1, 12),  # n_frames
)


@st.composite
def frame_times(draw) -> list[float]:
    """A video timeline: a base rate with jitter, random drops and occasional long gaps."""
    fps = draw(st.sampled_from([2.0, 7.5, 15.0, 29.97, 60.0]))
    n = draw(st.integers(0, 200))
    ts, t = [], draw(st.floats(0, 3))
    for _ in range(n):
        ts.append(round(t, 6))
        step = 1 / fps * draw(st.floats(0.5, 1.5))
        if draw(st.integers(0, 30)) == 0:
            step += draw(st.floats(0.5, 6))
        t += step
    return ts


@st.composite
def audio_timeline(draw) -> list[tuple[int, int]]:
    """(start sample, length) chunks, contiguous except for occasional gaps."""
    pos, out = draw(st.integers(0, 3 * SR)), []
    for _ in range(draw(st.integers(0, 60))):
        n = draw(st.sampled_from([160, 320, 1024, 1600, 4000]))
        out.append((pos, n))
        pos += n
        if draw(st.integers(0, 10)) == 0:
            pos += draw(st.integers(SR // 50, 3 * SR))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid, frame_times())
def test_frames_follow_the_midpoint_rule(g, times):
    length, hop, n = g
    fr = [VideoFrame(t, IMG, i) for i, t in enumerate(times)]
    w = Windower("p", length=length, hop=hop, n_frames=n)
    wins = []
    for f in fr:
        wins += w.push(f)
    wins += w.flush()
    idx = [x.index for x in wins]
    assert idx == sorted(set(idx)), "window indices strictly increase"
    for x in wins:
        ts = [f.ts for f in x.frames]
        assert ts == sorted(ts), "frames are in time order"
        assert all(x.start <= t < x.end for t in ts), "frames lie inside their window"
        inside = [f for f in fr if x.start <= f.ts < x.end]
        assert len(x.frames) == (n if inside else 0)
        full = math.isclose(x.end - x.start, length)
        if full:
            ref = nearest_frames(fr, x.start, x.end, n)
            assert [f.index for f in x.frames] == [f.index for f in ref]
            assert math.isclose(x.start, x.index * hop, abs_tol=1e-9)
    # every full window on the grid that holds a frame was emitted (nothing silently lost)
    if fr and hop <= length:
        last_full = max(x.index for x in wins) if wins else -1
        for k in range(last_full):
            if any(k * hop <= f.ts < k * hop + length for f in fr):
                assert k in idx, f"window {k} with frames was not emitted"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grid, audio_timeline())
def test_audio_covers_exactly_the_window(g, chunks):
    length, hop, n = g
    w = Windower("p", length=length, hop=hop, n_frames=n)
    wins = []
    for p, k in chunks:
        wins += w.push(AudioChunk(p / SR, np.arange(p, p + k, dtype=np.float64).astype(np.float32)))
    wins += w.flush()
    for x in wins:
        span = round((x.end - x.start) * SR)
        assert x.audio.dtype == np.float32 and len(x.audio) == span
        s0 = round(x.index * hop * SR)
        expect = np.zeros(span, np.float32)
        for p, k in chunks:
            lo, hi = max(p, s0), min(p + k, s0 + span)
            if hi > lo:
                expect[lo - s0 : hi - s0] = np.arange(lo, hi, dtype=np.float64).astype(np.float32)
        assert np.array_equal(x.audio, expect), "real samples where they arrived, zeros in gaps"
        assert np.any(x.audio != 0) or s0 == 0

"""Windower behaviour on synthetic timelines: A/V sync, gaps, clock offset, resolution changes, flush."""

from __future__ import annotations

import numpy as np
import pytest
from affectstream.engine.types import AudioChunk, VideoFrame
from affectstream.streams.windower import Windower, nearest_frames

SR = 16_000


def frames(fps: float, t0: float, t1: float, shape=(8, 8, 3), start_index: int = 0) -> list[VideoFrame]:
    n = round((t1 - t0) * fps)
    return [VideoFrame(t0 + i / fps, np.zeros(shape, np.uint8), start_index + i) for i in range(n)]


def audio(t0: float, t1: float, chunk: int = 1024, value: float | None = None) -> list[AudioChunk]:
    """Chunks whose samples encode their own sample position, so windows can be checked exactly."""
    out = []
    p0, p1 = round(t0 * SR), round(t1 * SR)
    for p in range(p0, p1, chunk):
        n = min(chunk, p1 - p)
        s = np.arange(p, p + n, dtype=np.float32) if value is None else np.full(n, value, np.float32)
        out.append(AudioChunk(p / SR, s))
    return out


def run(w: Windower, items) -> list:
    out = []
    for it in sorted(items, key=lambda x: x.ts):
        out += w.push(it)
    return out + w.flush()


def test_av_clip_gives_grid_windows_with_exact_audio_and_midpoint_frames():
    fr = frames(15, 0, 4)
    w = Windower("s")
    wins = run(w, fr + audio(0, 4))
    assert [(x.index, x.start, x.end) for x in wins] == [(0, 0, 2), (1, 1, 3), (2, 2, 4)]
    for x in wins:
        assert len(x.frames) == 8
        assert x.frames == nearest_frames(fr, x.start, x.end, 8)
        assert x.audio.dtype == np.float32 and len(x.audio) == 2 * SR
        # sample i of the window is sample start*SR + i of the stream
        assert np.array_equal(x.audio, np.arange(x.start * SR, x.end * SR, dtype=np.float32))
    assert w.stats.windows_emitted == 3 and w.stats.audio_gaps == 0


def test_windows_are_emitted_as_soon_as_both_modalities_pass_the_end():
    w = Windower("s")
    got = []
    for it in sorted(frames(10, 0, 3) + audio(0, 3), key=lambda x: x.ts):
        for win in w.push(it):
            got.append((win.index, it.ts))
    # window 0 ends at 2.0: it must close on the first item at/after 2.0, not later
    assert got[0][0] == 0 and 2.0 <= got[0][1] < 2.1


def test_video_only_and_audio_only_streams():
    v = run(Windower("v"), frames(10, 0, 3))
    assert [x.index for x in v] == [0, 1] and all(x.audio.size == 0 and len(x.frames) == 8 for x in v)
    a = run(Windower("a"), audio(0, 3))
    assert [x.index for x in a] == [0, 1] and all(x.frames == [] and len(x.audio) == 2 * SR for x in a)


def test_audio_gap_is_zero_filled_and_counted():
    items = audio(0, 1.0) + audio(1.5, 4.0)
    w = Windower("s")
    wins = run(w, items)
    w0 = wins[0]
    assert len(w0.audio) == 2 * SR
    assert np.all(w0.audio[int(1.0 * SR) : int(1.5 * SR)] == 0)
    assert np.array_equal(w0.audio[:SR], np.arange(0, SR, dtype=np.float32))
    assert w.stats.audio_gaps == 1 and w.stats.audio_gap_seconds == pytest.approx(0.5)


def test_small_timestamp_jitter_is_not_a_gap():
    chunks = audio(0, 3.0)
    jit = [0.0] + [0.0003 if i % 2 else -0.0002 for i in range(1, len(chunks))]
    jittered = [AudioChunk(c.ts + j, c.samples) for c, j in zip(chunks, jit, strict=True)]
    w = Windower("s")
    wins = run(w, jittered)
    assert w.stats.audio_gaps == 0
    assert np.array_equal(wins[0].audio, np.arange(0, 2 * SR, dtype=np.float32))


def test_overlapping_audio_is_dropped_and_counted():
    w = Windower("s")
    items = [*audio(0, 1.0), AudioChunk(0.5, np.full(SR, -1.0, np.float32)), *audio(1.5, 3.0)]
    wins = []
    for it in items:  # arrival order matters here
        wins += w.push(it)
    wins += w.flush()
    assert w.stats.audio_overlap_seconds == pytest.approx(0.5)
    # the first copy of [0.5, 1.0) wins; the non-overlapping half of the late chunk is kept
    assert np.array_equal(wins[0].audio[:SR], np.arange(0, SR, dtype=np.float32))
    assert np.all(wins[0].audio[SR : int(1.5 * SR)] == -1.0)


def test_long_timestamp_jump_skips_empty_windows_in_constant_time():
    items = frames(10, 0, 3) + frames(10, 100_000, 100_003, start_index=30)
    w = Windower("s")
    wins = run(w, items)
    idx = [x.index for x in wins]
    assert idx[:2] == [0, 1] and idx[-2:] == [99_999 + 1, 100_001]
    assert w.stats.windows_skipped > 99_000 and w.stats.video_gaps == 1
    assert len(wins) < 10


def test_video_gap_gives_window_without_frames_but_with_audio():
    items = frames(10, 0, 1) + frames(10, 5, 7, start_index=10) + audio(0, 7)
    wins = run(Windower("s"), items)
    by = {x.index: x for x in wins}
    assert by[2].frames == [] and len(by[2].audio) == 2 * SR  # [2,4) has no video at all
    assert all(f.ts < 1 for f in by[0].frames)


def test_av_offset_waits_for_the_lagging_track_within_max_skew():
    # audio arrives 0.5 s "late" in the interleaving: every audio chunk is pushed 0.5 s after its time
    fr, au = frames(10, 0, 4), audio(0, 4)
    items = sorted([(f.ts, f) for f in fr] + [(a.ts + 0.5, a) for a in au], key=lambda p: p[0])
    w = Windower("s", max_skew=1.0)
    wins = []
    for _, it in items:
        wins += w.push(it)
    wins += w.flush()
    assert w.stats.windows_forced == 0 and w.stats.audio_late_seconds == 0
    assert all(
        np.array_equal(x.audio, np.arange(x.start * SR, x.end * SR, dtype=np.float32)) for x in wins[:3]
    )


def test_stalled_track_forces_windows_after_max_skew():
    # audio stops at 1 s while video goes on: windows must not wait forever
    w = Windower("s", max_skew=0.5)
    out = []
    for it in sorted(frames(10, 0, 6) + audio(0, 1.0), key=lambda x: x.ts):
        out += w.push(it)
    assert [x.index for x in out] == [0, 1, 2, 3]
    assert w.stats.windows_forced == 4
    assert np.all(out[1].audio == 0) and len(out[1].audio) == 2 * SR


def test_resolution_change_is_tolerated_and_counted():
    items = frames(10, 0, 2, shape=(480, 640, 3)) + frames(10, 2, 4, shape=(720, 1280, 3), start_index=20)
    w = Windower("s")
    wins = run(w, items)
    assert w.stats.resolution_changes == 1
    shapes = {f.image.shape for f in wins[1].frames}
    assert shapes == {(480, 640, 3), (720, 1280, 3)}


def test_flush_emits_partial_tail_without_redundant_windows():
    w = Windower("s")
    wins = run(w, frames(10, 0, 4.5) + audio(0, 4.5))
    assert [(x.start, x.end) for x in wins] == [(0, 2), (1, 3), (2, 4), (3, 4.5)]
    tail = wins[-1]
    assert len(tail.audio) == int(1.5 * SR) and len(tail.frames) == 8
    assert all(3 <= f.ts < 4.5 for f in tail.frames)
    assert w.stats.windows_partial == 1
    short = run(Windower("s"), audio(0, 0.3))
    assert [(x.start, x.end) for x in short] == [(0, 0.3)]
    padded = run(Windower("s"), audio(0, 4.048))  # AAC padding: no window about 48 ms
    assert [(x.start, x.end) for x in padded] == [(0, 2), (1, 3), (2, 4)]


def test_out_of_order_and_duplicate_frames_inside_a_window_follow_the_rule():
    fr = frames(7.5, 0, 4)
    order = list(fr)
    order[3], order[4] = order[4], order[3]  # a B-frame style swap inside window 0
    dup = VideoFrame(fr[10].ts, fr[10].image, 999)  # same timestamp again: the first one stays
    order.insert(12, dup)
    w = Windower("s")
    wins = []
    for f in order:
        wins += w.push(f)
    wins += w.flush()
    assert [(x.start, x.end) for x in wins] == [(0, 2), (1, 3), (2, 4)]
    for x in wins:
        assert [f.index for f in x.frames] == [f.index for f in nearest_frames(fr, x.start, x.end, 8)]


def test_late_frames_are_dropped_and_counted():
    w = Windower("s")
    for it in frames(10, 0, 3):
        w.push(it)
    w.push(VideoFrame(0.5, np.zeros((8, 8, 3), np.uint8), 99))
    assert w.stats.frames_late == 1


def test_memory_is_bounded_by_candidate_slots():
    w = Windower("s", length=2.0, hop=1.0, n_frames=8)
    distinct = set()
    for f in frames(60, 0, 30):
        w.push(f)
        assert w.pending <= 3
        distinct = {id(fr) for s in w._slots.values() for fr in s.frames()}
        assert len(distinct) <= 2 * 8 + 2


def test_bad_input_raises_clear_errors():
    w = Windower("s")
    with pytest.raises(ValueError, match="44100 Hz"):
        w.push(AudioChunk(0.0, np.zeros(10, np.float32), 44_100))
    with pytest.raises(ValueError, match="mono"):
        w.push(AudioChunk(0.0, np.zeros((10, 2), np.float32)))
    with pytest.raises(ValueError, match="non-finite"):
        w.push(VideoFrame(float("nan"), np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(TypeError):
        w.push("frame")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hop"):
        Windower("s", hop=0)

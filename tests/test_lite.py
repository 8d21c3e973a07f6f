"""The lite fast path end to end with real weights and real media (BlazeFace, mini-Xception, Silero)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.lite import LiteAnalyzer
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.engine.types import VideoFrame, Window
from media import astronaut_bgr, beckett_audio, moving_frames, no_face_bgr, write_clip

SR = 16000


def window(
    stream: str, index: int, frames: list[np.ndarray], first: int = 0, audio=None, fps: float = 4.0
) -> Window:
    vf = [VideoFrame(ts=(first + k) / fps, image=f, index=first + k) for k, f in enumerate(frames)]
    start = first / fps
    a = np.zeros(0, np.float32) if audio is None else audio
    return Window(stream, index, start, start + 2.0, vf, a)


@pytest.fixture(scope="module")
def astro_frames() -> list[np.ndarray]:
    return moving_frames(astronaut_bgr(), 16)


def check_payload(r) -> dict:
    from affectstream.streams.contract import validate

    p = json.loads(json.dumps(r.to_payload()))
    validate("window", p)
    assert set(p["scores"]) == set(EMOTIONS)
    assert abs(sum(r.scores.values()) - 1) < 1e-3
    assert r.label in EMOTIONS and 0 <= r.score <= 1
    return p


def test_astronaut_is_happy_with_one_stable_track(lite_analyzer, astro_frames):
    r0 = lite_analyzer.analyze(window("astro", 0, astro_frames[:8]))
    r1 = lite_analyzer.analyze(window("astro", 1, astro_frames[4:12], first=4))
    for r in (r0, r1):
        check_payload(r)
        assert r.label == "happy" and r.score > 0.8
        assert len(r.faces) == 1 and r.faces[0].label == "happy"
        assert r.modalities == {"face": 1.0, "voice": 0.0}
        x1, y1, x2, y2 = r.faces[0].box
        assert 0 <= x1 < x2 <= 384 and 0 <= y1 < y2 <= 384 and (x2 - x1) > 40
        for k in ("detect", "expression", "vad", "prosody", "fusion", "analyze", "fast_path"):
            assert k in r.latency_ms and r.latency_ms[k] >= 0
    assert r0.faces[0].track == r1.faces[0].track  # same person, same id across windows


def test_face_free_video_is_honest(lite_analyzer):
    frames = [no_face_bgr()] * 8
    r = lite_analyzer.analyze(window("noface", 0, frames))
    check_payload(r)
    assert r.faces == []
    assert r.label == "neutral" and r.score == pytest.approx(1 / 7, abs=1e-6)
    assert r.modalities == {}
    # with speech, the voice says something — with low confidence
    rv = lite_analyzer.analyze(window("noface", 1, frames, first=8, audio=beckett_audio()[: 2 * SR]))
    check_payload(rv)
    assert rv.faces == [] and rv.voice is not None and rv.voice.speech
    assert rv.modalities == {"face": 0.0, "voice": 1.0}
    # with the trained voice head its calibrated top score; on prosody alone capped near uniform
    assert (
        rv.score == pytest.approx(max(rv.voice.scores.values()), abs=1e-4)
        if rv.voice.scores
        else rv.score < 0.35
    )


def test_audio_only_window(lite_analyzer):
    r = lite_analyzer.analyze(Window("mic", 0, 0.0, 2.0, [], beckett_audio()[SR : 3 * SR]))
    p = check_payload(r)
    assert p["voice"]["speech"] is True and 0 < p["voice"]["speech_ratio"] <= 1
    assert p["voice"]["pitch_hz"] is not None and 70 < p["voice"]["pitch_hz"] < 200
    assert r.faces == []
    assert (
        r.score == pytest.approx(max(r.voice.scores.values()), abs=1e-4) if r.voice.scores else r.score < 0.35
    )
    silent = lite_analyzer.analyze(Window("mic", 1, 1.0, 3.0, [], np.zeros(2 * SR, np.float32)))
    check_payload(silent)
    assert silent.voice is not None and not silent.voice.speech
    assert silent.label == "neutral" and silent.score == pytest.approx(1 / 7, abs=1e-6)


def test_bad_frames_and_bad_audio_never_crash(lite_analyzer):
    bad_frames = [
        np.zeros((1, 1, 3), np.uint8),
        np.full((10000, 10, 3), 128, np.uint8),
        np.full((10, 10000, 3), 128, np.uint8),
        astronaut_bgr()[:, :, 0].copy(),  # grayscale 2-D, a real face
        np.dstack([astronaut_bgr(), np.full((512, 512, 1), 255, np.uint8)]),  # BGRA
        np.zeros((480, 640, 3), np.uint8),  # all black
        np.zeros((0, 10, 3), np.uint8),  # empty
        np.zeros((8, 8, 2), np.uint8),  # nonsense channel count
    ]
    before = lite_analyzer.frames_bad
    audio = beckett_audio()[: 2 * SR].copy()
    audio[::5] = np.nan
    audio[1::9] = np.inf
    r = lite_analyzer.analyze(window("bad", 0, bad_frames, audio=audio))
    check_payload(r)
    assert lite_analyzer.frames_bad >= before + 2  # the empty and the 2-channel frame were rejected
    # the grayscale and BGRA astronaut frames still count: a face, and it is happy (the fused label also
    # weighs the voice, which on this damaged audio may disagree)
    assert len(r.faces) >= 1 and r.faces[0].label == "happy"
    for odd_audio in (
        (beckett_audio()[: 2 * SR] * 32767).astype(np.int16),  # integer PCM by mistake
        np.stack([beckett_audio()[: 2 * SR]] * 2, axis=1),  # stereo (N, 2)
        np.full(2 * SR, np.inf, np.float32),
        np.zeros(3, np.float32),
    ):
        ro = lite_analyzer.analyze(Window("odd-audio", 0, 0.0, 2.0, [], odd_audio))
        check_payload(ro)
    clipped = np.clip(beckett_audio()[: 2 * SR] * 50, -1, 1).astype(np.float32)
    rc = lite_analyzer.analyze(Window("clip", 0, 0.0, 2.0, [], clipped))
    check_payload(rc)
    assert rc.voice is not None and rc.voice.speech


def test_cache_reuses_overlapping_frames_and_changes_nothing(lite_prof, astro_frames):
    on = LiteAnalyzer(lite_prof, threads=1)
    off = LiteAnalyzer(lite_prof, threads=1, cache_frames=0)
    wins = [window("c", k, astro_frames[4 * k : 4 * k + 8], first=4 * k) for k in range(3)]  # hop = length/2
    r_on = [on.analyze(w) for w in wins]
    r_off = [off.analyze(w) for w in wins]
    assert on.frames_processed == 16  # 8 + 4 + 4: shared frames detected and classified once
    assert off.frames_processed == 24
    assert on.cache.stats()["hits"] == 8
    for a, b in zip(r_on, r_off, strict=True):
        assert a.label == b.label
        assert max(abs(a.scores[k] - b.scores[k]) for k in EMOTIONS) < 1e-6
        assert [f.track for f in a.faces] == [f.track for f in b.faces]


def test_cache_is_bounded_and_keyed_by_stream(lite_prof, astro_frames):
    a = LiteAnalyzer(lite_prof, threads=1, cache_frames=10)
    # two streams with identical frame indices but different content must not alias
    ra = a.analyze(window("s-face", 0, astro_frames[:8]))
    rb = a.analyze(window("s-noface", 0, [no_face_bgr()] * 8))
    assert ra.faces and not rb.faces
    assert len(a.cache) <= 10 and a.cache.stats()["evictions"] >= 6


def test_batch_across_streams_matches_single(lite_prof, astro_frames):
    single = LiteAnalyzer(lite_prof, threads=1)
    batched = LiteAnalyzer(lite_prof, threads=1)
    audio = beckett_audio()
    wins = [
        window("b1", 0, astro_frames[:8], audio=audio[: 2 * SR]),
        window("b2", 0, [no_face_bgr()] * 8, audio=audio[2 * SR : 4 * SR]),
        window("b3", 0, astro_frames[8:16], first=8),
    ]
    rs = [single.analyze(w) for w in wins]
    rb = batched.analyze_batch(wins)
    assert [r.stream for r in rb] == ["b1", "b2", "b3"]
    for x, y in zip(rs, rb, strict=True):
        assert x.label == y.label
        assert max(abs(x.scores[k] - y.scores[k]) for k in EMOTIONS) < 1e-5
        assert (x.voice is None) == (y.voice is None)
    assert rb[0].extra.get("batch") == 3


def test_damaged_model_file_is_named(lite_prof, tmp_path: Path):
    root = tmp_path / "lite"
    root.mkdir()
    for p in lite_prof.root.iterdir():
        (root / p.name).symlink_to(p)
    (root / "expression.onnx").unlink()
    data = bytearray(lite_prof.path("expression").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "expression.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as ei:
        LiteAnalyzer(root)
    assert "expression.onnx" in str(ei.value) and "affectstream models prepare lite" in str(ei.value)


@pytest.mark.slow
def test_real_clip_through_source_and_windower(lite_analyzer, tmp_path: Path):
    """A clip with a real face and real speech, decoded and windowed by the real pipeline parts."""
    import asyncio

    from affectstream.streams.sources.file import FileSource
    from affectstream.streams.windower import Windower

    clip = write_clip(tmp_path / "clip.mp4", seconds=5.0, fps=15)

    async def collect() -> list[Window]:
        src = FileSource(clip, "clip")
        wd = Windower("clip", length=2.0, hop=1.0, n_frames=8)
        out: list[Window] = []
        async for item in src:
            out += wd.push(item)
        out += wd.flush()
        await src.close()
        return out

    wins = asyncio.run(collect())
    assert len(wins) >= 3
    results = lite_analyzer.analyze_batch(wins)
    happy = 0
    for w, r in zip(wins, results, strict=True):
        check_payload(r)
        assert r.window.index == w.index
        if r.faces:
            assert r.modalities["face"] > r.modalities["voice"]  # a clear, confident face leads
            happy += r.label == "happy"
    assert happy >= len(wins) - 1  # the smiling astronaut is on screen the whole time
    assert sum(r.voice is not None and r.voice.speech for r in results) >= len(results) - 1


@pytest.mark.slow
def test_torch_reference_runtime_agrees(lite_prof, astro_frames):
    ort_a = LiteAnalyzer(lite_prof, threads=1)
    torch_a = LiteAnalyzer(lite_prof, threads=1, runtime="torch")
    assert torch_a.runtime_info()["expression"]["name"] == "torch"
    w = window("t", 0, astro_frames[:8])
    x, y = ort_a.analyze(w), torch_a.analyze(w)
    assert x.label == y.label == "happy"
    assert max(abs(x.scores[k] - y.scores[k]) for k in EMOTIONS) < 1e-3


def test_runtime_info_reports_real_providers(lite_analyzer):
    info = lite_analyzer.runtime_info()
    for k in ("expression", "vad", "face"):
        assert info[k]["name"] == "onnxruntime" and info[k]["providers"]
    assert {"hits", "misses", "size", "capacity"} <= set(info["frame_cache"])
    json.dumps(info)


def test_analyzer_protocol(lite_analyzer):
    from affectstream.engine.analyzer import Analyzer

    assert isinstance(lite_analyzer, Analyzer)
    assert lite_analyzer.analyze_batch([]) == []


def test_cache_never_serves_stale_frames_after_a_clock_restart(lite_prof, astro_frames):
    a = LiteAnalyzer(lite_prof, threads=1)
    assert a.analyze(window("restart", 0, astro_frames[:8])).faces
    # same stream, same indices and timestamps, different pictures: must be analysed afresh
    r = a.analyze(window("restart", 1, [no_face_bgr()] * 8))
    assert r.faces == [] and r.label == "neutral"
    # later the stream runs on past where it was, then restarts again at 0 with the face: tracked anew
    a.analyze(window("restart", 2, [no_face_bgr()] * 8, first=40))
    again = a.analyze(window("restart", 3, astro_frames[:8]))
    assert len(again.faces) == 1 and again.faces[0].track > 0 and again.label == "happy"


def test_facial_actions_from_the_mesh(lite_analyzer, lite_prof, astro_frames):
    if not lite_prof.has("face_mesh"):
        pytest.skip("profile has no face_mesh component")
    r = lite_analyzer.analyze(window("acts", 0, astro_frames[:8]))
    p = check_payload(r)
    acts = p["faces"][0]["actions"]
    assert {"mouth_open", "smile_width", "mouth_corner_lift", "eye_open", "brow_raise"} <= set(acts)
    assert all(np.isfinite(v) for v in acts.values())
    assert acts["mouth_corner_lift"] > 0  # the astronaut smiles: mouth corners above the lip centre
    assert "mesh" in r.latency_ms
    plain = LiteAnalyzer(lite_prof, threads=1, actions=False)
    rp = plain.analyze(window("acts", 0, astro_frames[:8]))
    assert rp.faces[0].actions is None and "mesh" not in rp.latency_ms


def test_sequence_vad_gives_the_same_voice(lite_prof, silero_sequence_path):
    seq = LiteAnalyzer(lite_prof, threads=1, vad_model=silero_sequence_path, actions=False)
    assert seq.vad.mode == "sequence"
    ref = LiteAnalyzer(lite_prof, threads=1, actions=False)
    audio = beckett_audio()
    for k in range(4):  # overlapping windows: both stream over time
        w = Window("sv", k, float(k), k + 2.0, [], audio[k * SR : (k + 2) * SR])
        a, b = ref.analyze(w).voice, seq.analyze(w).voice
        assert a is not None and b is not None
        assert a.speech == b.speech and a.speech_ratio == pytest.approx(b.speech_ratio, abs=1e-6)
        assert a.arousal == pytest.approx(b.arousal, abs=1e-6) if a.arousal is not None else b.arousal is None

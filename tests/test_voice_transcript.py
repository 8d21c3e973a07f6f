"""Optional Whisper-base transcript (CTranslate2 via faster-whisper), off the fast path."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faster_whisper", reason="faster-whisper not installed (optional extra 'transcript')")


@pytest.fixture(scope="module")
def transcriber(lite_prof):
    from affectstream.engine.models.transcript import Transcriber

    t = Transcriber(lite_prof.path("whisper"), threads=2, min_interval_s=60.0)
    yield t
    t.close()


@pytest.mark.slow
def test_beckett_transcript_contains_fail_better(transcriber, beckett):
    text = transcriber.transcribe(beckett).lower()
    assert "fail better" in text.replace(",", "").replace(".", "")


@pytest.mark.slow
def test_background_rate_limited(transcriber, beckett):
    assert transcriber.submit("s1", 0, beckett)
    assert not transcriber.submit("s1", 1, beckett)  # within min_interval_s: refused, not queued
    tr = transcriber.wait_for("s1", 0, timeout=60)
    assert tr is not None and "fail" in tr.text.lower()
    assert transcriber.latest("s1") is tr and tr.latency_ms > 0
    assert transcriber.stats()["done"] >= 1


def test_garbage_audio_gives_text_not_crash(transcriber):
    t0 = time.perf_counter()
    assert transcriber.transcribe(np.full(800, np.nan, np.float32)) == ""
    assert time.perf_counter() - t0 < 5


def test_missing_model_folder(tmp_path):
    from affectstream.engine.models.transcript import Transcriber
    from affectstream.engine.runtimes.base import ModelFileError

    with pytest.raises(ModelFileError, match=r"model\.bin"):
        Transcriber(tmp_path)


def test_speech_buffer_keeps_recent_audio_without_overlaps():
    from affectstream.engine.models.transcript import SpeechBuffer

    sr = 16000
    sig = np.arange(12 * sr, dtype=np.float32)
    b = SpeechBuffer(seconds=5.0)
    for k in range(11):  # 2 s windows, hop 1 s
        b.add(float(k), sig[k * sr : (k + 2) * sr])
    got = b.audio()
    assert len(got) == 5 * sr
    np.testing.assert_array_equal(got, sig[7 * sr : 12 * sr])  # contiguous, no duplicated overlap
    b.add(0.0, np.zeros(2 * sr, np.float32))  # clock restarted: start over
    assert len(b.audio()) == 2 * sr and not b.audio().any()


@pytest.mark.slow
def test_lite_attaches_transcript_of_recent_speech(lite_prof, beckett):
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.types import Window

    a = LiteAnalyzer(lite_prof, threads=1, transcript=True)
    try:
        a.transcriber.min_interval_s = 1e9  # one request only (the first speech window): keeps CI fast
        sr = 16000
        first = a.analyze(Window("tx", 0, 0.0, 2.0, [], beckett[: 2 * sr]))
        assert first.voice is not None and first.voice.speech
        assert first.voice.transcript is None  # off the fast path: not waited for
        assert a.transcriber.wait_for("tx", 0, timeout=60) is not None
        r = a.analyze(Window("tx", 1, 1.0, 3.0, [], beckett[sr : 3 * sr]))
        assert r.voice is not None and r.voice.transcript is not None
        assert "tried" in r.voice.transcript.lower()  # beckett opens with "Ever tried."
        stale = a.analyze(Window("tx", 30, 30.0, 32.0, [], np.zeros(2 * sr, np.float32)))
        assert stale.voice is not None and stale.voice.transcript is None  # too old to attach
    finally:
        a.close()
    assert a.transcriber is None


def _thread_nices() -> dict[int, int]:
    import os

    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = int(stat.rsplit(")", 1)[1].split()[16])  # field 19: nice
    return out


@pytest.mark.skipif(
    not __import__("os").path.isdir("/proc/self/task"), reason="per-thread nice is read from Linux /proc"
)
def test_transcript_threads_run_at_lower_priority(lite_prof, beckett, tmp_path):
    """`lite.transcript_nice`: the transcript thread and the CTranslate2 threads it starts run that many
    nice steps lower (so Whisper yields the cores to the fast path), or under SCHED_IDLE with
    `transcript_idle`; the caller's threads keep theirs."""
    import os

    from affectstream.engine.models.transcript import Transcriber
    from affectstream.engine.runtimes.base import ModelFileError

    base = os.getpriority(os.PRIO_PROCESS, 0)
    before = _thread_nices()
    t = Transcriber(lite_prof.path("whisper"), threads=1, min_interval_s=0.0, nice=5)
    try:
        assert t.submit("s1", 0, beckett[: 16000 * 2])
        assert t.wait_for("s1", 0, timeout=60) is not None  # it really transcribed at that priority
        new = {tid: n for tid, n in _thread_nices().items() if tid not in before}
        assert len(new) >= 2, new  # the transcript thread and at least one CTranslate2 worker
        assert set(new.values()) == {min(19, base + 5)}, new
        assert os.getpriority(os.PRIO_PROCESS, 0) == base
    finally:
        t.close()
    # `lite.transcript_idle`: the same threads under SCHED_IDLE instead, the caller's policy unchanged
    policy = os.sched_getscheduler(0)
    before = _thread_nices()
    t = Transcriber(lite_prof.path("whisper"), threads=1, min_interval_s=0.0, nice=5, idle=True)
    try:
        assert t.submit("s1", 0, beckett[: 16000 * 2])
        assert t.wait_for("s1", 0, timeout=60) is not None
        new_ids = [tid for tid in _thread_nices() if tid not in before]
        assert len(new_ids) >= 2, new_ids
        assert {os.sched_getscheduler(tid) for tid in new_ids} == {os.SCHED_IDLE}
        assert os.sched_getscheduler(0) == policy
    finally:
        t.close()
    broken = tmp_path / "whisper"  # every file present, none a model: the load fails inside the thread
    broken.mkdir()
    for f in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        (broken / f).write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="failed to load"):
        Transcriber(broken, nice=5)

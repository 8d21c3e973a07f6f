"""Optional Whisper-base transcript (CTranslate2 via faster-whisper), off the fast path."""

from __future__ import annotations

import time

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

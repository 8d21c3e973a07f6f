"""`affectstream eval media`: the real engine over a few generated labelled clips (video+speech,
speech only, a still image, a broken file), with the expected counts per modality."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from media import astronaut_bgr, beckett_audio, write_clip

pytest.importorskip("faster_whisper", reason="the voice model needs faster-whisper")

SR = 16_000


def make_set(root: Path) -> Path:
    write_clip(root / "face_speech.mp4", seconds=4.0, fps=10, speech=beckett_audio()[: 4 * SR])
    sf.write(root / "speech.flac", beckett_audio()[2 * SR : 6 * SR], SR)
    cv2.imwrite(str(root / "face.png"), astronaut_bgr())
    (root / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    (root / "labels.csv").write_text(
        "path,label,dataset\n"
        "face_speech.mp4,happy,av\n"
        "speech.flac,neutral,audio\n"
        "face.png,happy,image\n"
        "broken.mp4,sad,av\n"
    )
    return root / "labels.csv"


def test_eval_media_counts(tmp_path, lite_analyzer):
    from affectstream.train.voice.eval_media import run

    labels = make_set(tmp_path)
    rep = run(labels, per_modality=True, out=tmp_path / "out", analyzer=lite_analyzer)
    cov = rep["coverage"]
    assert cov["clips"] == 4 and cov["failed"] == 1
    assert cov["face_observed"] == 2  # the video and the image
    assert cov["voice_observed"] == 2  # the video's speech and the audio file
    assert cov["windows_face_and_voice"] >= 2  # a 4 s clip at 2 s / 1 s hop has several windows
    rows = rep["rows"]
    assert rows["fused"]["n"] == 3 and rows["face-only"]["n"] == 2 and rows["voice-only"]["n"] == 2
    assert set(rows["fused"]["per_dataset"]) == {"av", "audio", "image"}
    by = {Path(c["path"]).name: c for c in rep["clips"]}
    assert by["face.png"]["fused"] == "happy" and by["face.png"]["voice"] is None
    assert by["speech.flac"]["face"] is None and by["speech.flac"]["voice"] is not None
    assert by["face_speech.mp4"]["face"] == "happy" and by["face_speech.mp4"]["windows"] >= 3
    assert rep["failed"][0]["path"].endswith("broken.mp4")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["coverage"] == cov and (tmp_path / "out" / "confusion.png").is_file()
    assert np.asarray(rows["fused"]["confusion"]).sum() == 3


def test_eval_media_cli_errors(tmp_path, capsys):
    from affectstream.engine.cli import main

    assert main(["eval", "media", "--labels", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.mp4,furious\n")
    assert main(["eval", "media", "--labels", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not one of" in err and len(err.splitlines()) == 1

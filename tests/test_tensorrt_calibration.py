"""Calibration batches come from real windows and are shaped/normalised exactly like inference input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from affectstream.engine.profile import Profile
from affectstream.engine.runtimes.onnx import OrtRuntime
from affectstream.export.calibration import (
    CalibrationError,
    make_calibration_set,
    profile_face_boxes,
    read_windows,
)
from media import no_face_bgr, write_clip


@pytest.fixture(scope="module")
def windows(calib_clip: Path):
    return read_windows(calib_clip)


@pytest.fixture(scope="module")
def face_boxes(lite_profile: Path):
    return profile_face_boxes(lite_profile)


def test_windows_follow_the_engine_rule(windows) -> None:
    # 4 s at 15 fps cut by the engine's own Windower: 2 s windows every 1 s → [0,2), [1,3), [2,4).
    assert [(w.index, w.start) for w in windows] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    for w in windows:
        assert w.end - w.start == pytest.approx(2.0)
        assert len(w.frames) == 8
        ts = [f.ts for f in w.frames]
        assert ts == sorted(ts) and w.start <= ts[0] and ts[-1] <= w.end
        mids = w.start + 0.25 * (np.arange(8) + 0.5)  # segment midpoints of 8 × 0.25 s
        assert np.all(np.abs(np.array(ts) - mids) <= 1 / 15 / 2 + 1e-6)
        assert w.audio.dtype == np.float32 and len(w.audio) == 32000
        assert np.abs(w.audio).max() > 0.05  # real speech, not silence
        assert w.frames[0].image.shape == (384, 384, 3) and w.frames[0].image.dtype == np.uint8


def test_blazeface_batches_shape_and_normalisation(calib_clip: Path, windows, lite_profile: Path) -> None:
    cs = make_calibration_set("face_short", "input", calib_clip, batch_size=8, windows=windows)
    frames = {f.index: f.image for w in windows for f in w.frames}
    assert cs.n_samples == len(frames)  # overlapping windows: each frame used once
    assert all(b.shape == (8, 128, 128, 3) and b.dtype == np.float32 for b in cs.batches)
    x = np.concatenate(cs.batches)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.5 and x.max() > 0.5
    # Independent check of the recipe on a square frame (no letterbox padding): area resize to 128,
    # BGR → RGB, x / 127.5 - 1. The detector may resize in two steps for speed (≈1 grey level apart).
    first = frames[min(frames)]
    area = cv2.resize(first, (128, 128), interpolation=cv2.INTER_AREA)
    want = area[:, :, ::-1] / 127.5 - 1.0
    got = cs.batches[0][0]
    assert np.abs(got - want).mean() < 2 / 127.5 and np.abs(got - want).max() < 24 / 127.5
    swapped = area / 127.5 - 1.0  # BGR left as is: clearly worse on a colourful photo
    assert np.abs(got - swapped).mean() > 5 * np.abs(got - want).mean()
    # And the real detector finds the face with high confidence on every calibration image: a wrong
    # normalisation (e.g. 0..255) drives these scores to ~0.
    rt = OrtRuntime(Profile.load(lite_profile).path("face_short"), ["CPUExecutionProvider"], 1)
    scores = 1 / (1 + np.exp(-np.clip(rt.run({"input": x[: cs.n_samples]})["classificators"], -50, 50)))
    assert scores.max(axis=(1, 2)).min() > 0.75


def test_blazeface_letterbox_pads_non_square_frames(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "wide.mp4", seconds=2.0, size=(480, 240), audio=False)
    cs = make_calibration_set("face_full", "input", clip, batch_size=4)
    b = cs.batches[0]
    assert b.shape == (4, 192, 192, 3)
    # 480×240 → 192×96 centred: 48 rows of padding above and below, value 0 (mid-grey in [-1, 1]).
    assert np.all(b[:, :48] == 0.0) and np.all(b[:, 144:] == 0.0)
    assert np.abs(b[:, 48:144]).mean() > 0.1


def test_expression_batches_match_inference_input(
    calib_clip: Path, windows, face_boxes, lite_profile
) -> None:
    """The calibrator must feed the encoder exactly what `ExpressionModel.predict` feeds it."""
    from affectstream.engine.models.expression import ExpressionModel, to_gray

    prof = Profile.load(lite_profile)
    cs = make_calibration_set(
        "expression", "input", calib_clip, batch_size=4, windows=windows, face_boxes=face_boxes
    )
    assert all(b.shape == (4, 1, 64, 64) and b.dtype == np.float32 for b in cs.batches)
    x = np.concatenate(cs.batches)[: cs.n_samples]
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
    model = ExpressionModel.from_path(prof.path("expression"), threads=1)
    frames = {f.index: f.image for w in windows for f in w.frames}
    crops = []
    for img, faces in zip(frames.values(), face_boxes(list(frames.values())), strict=True):
        crops.append(model.crops(to_gray(img), [f.box for f in faces]))
    crops = np.concatenate(crops)
    assert len(crops) == cs.n_samples >= len(frames)  # the astronaut is found in every frame
    probs_predict = model.predict(crops)
    probs_calib = model.runtime.run({"input": x})["probs"]
    np.testing.assert_allclose(probs_calib, probs_predict, atol=1e-6)
    assert (probs_predict.argmax(1) == 3).mean() > 0.9  # the smiling astronaut reads as happy


def test_batches_are_fixed_size_bounded_and_keyed(calib_clip: Path, windows, tmp_path: Path) -> None:
    small = make_calibration_set(
        "face_short", "input", calib_clip, batch_size=5, max_batches=2, windows=windows
    )
    assert len(small.batches) == 2 and all(len(b) == 5 for b in small.batches)
    big = make_calibration_set("face_short", "input", calib_clip, batch_size=64, windows=windows)
    assert len(big.batches) == 1 and len(big.batches[0]) == 64  # padded cyclically
    np.testing.assert_array_equal(big.batches[0][big.n_samples], big.batches[0][0])
    again = make_calibration_set(
        "face_short", "input", calib_clip, batch_size=5, max_batches=2, windows=windows
    )
    assert again.calibration_id == small.calibration_id
    assert big.calibration_id != small.calibration_id
    other = write_clip(tmp_path / "other.mp4", seconds=3.0, audio=False)
    assert make_calibration_set("face_short", "input", other, batch_size=5, max_batches=2).calibration_id != (
        small.calibration_id
    )


def test_a_clip_without_faces_is_refused_for_expression(tmp_path: Path, face_boxes) -> None:
    clip = write_clip(tmp_path / "noface.mp4", seconds=2.0, image=no_face_bgr(), audio=False)
    with pytest.raises(CalibrationError, match="no faces found"):
        make_calibration_set("expression", "input", clip, batch_size=4, face_boxes=face_boxes)


def test_bad_sources_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not found"):
        read_windows(tmp_path / "nope.mp4")
    audio_only = write_clip(tmp_path / "voice.m4a", seconds=1.0, video=False)
    with pytest.raises(CalibrationError, match="no video track"):
        read_windows(audio_only)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a media file" * 10)
    with pytest.raises(CalibrationError, match="cannot decode"):
        read_windows(junk)
    with pytest.raises(CalibrationError, match="no calibration recipe"):
        make_calibration_set("whisper", "x", write_clip(tmp_path / "a.mp4", seconds=1.0), batch_size=1)


def test_decode_is_bounded_for_long_or_large_clips(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "big.mp4", seconds=4.0, size=(640, 480), audio=False)
    wins = read_windows(clip, max_windows=1, max_side=320)
    assert len(wins) == 1
    assert {f.image.shape for f in wins[0].frames} == {(240, 320, 3)}
    assert len(read_windows(clip)) == 3 and read_windows(clip)[0].frames[0].image.shape == (480, 640, 3)


def test_face_mesh_batches_match_inference_input(calib_clip: Path, windows, face_boxes, lite_profile) -> None:
    """Mesh calibration crops are exactly what `FaceMesh.run` feeds the model: same landmarks out."""
    from affectstream.engine.models.face_mesh import FaceMesh, _to_image, roi_affine

    prof = Profile.load(lite_profile)
    if "face_mesh" not in prof.manifest.components:
        pytest.skip("this lite profile has no face_mesh component")
    cs = make_calibration_set(
        "face_mesh", "input", calib_clip, batch_size=8, windows=windows, face_boxes=face_boxes
    )
    x = np.concatenate(cs.batches)[: cs.n_samples]
    assert x.shape[1:] == (192, 192, 3) and x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    rt = OrtRuntime(prof.path("face_mesh"), ["CPUExecutionProvider"], 1)
    frames = list({f.index: f.image for w in windows for f in w.frames}.values())
    dets = face_boxes(frames)
    ours = rt.run({"input": x})["landmarks"].reshape(len(x), -1, 3)[:, :468].astype(np.float64)
    ref = FaceMesh(rt).run(frames, dets)
    k = 0
    for img_dets, img_res in zip(dets, ref, strict=True):
        for d, r in zip(img_dets, img_res, strict=True):
            assert r is not None
            np.testing.assert_allclose(_to_image(ours[k], roi_affine(d)), r.landmarks, atol=1e-3)
            k += 1
    assert k == cs.n_samples

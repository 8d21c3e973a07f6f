"""IoU tracking: stable ids over real moving clips, distinct ids for distinct faces, expiry, bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.models.face_detector import FaceDetector
from affectstream.engine.models.tracker import IoUTracker, TrackerBank
from media import astronaut_bgr, moving_frames
from test_face_detector import mosaic


@pytest.fixture(scope="module")
def detector(lite_profile: Path) -> FaceDetector:
    return FaceDetector.from_profile(lite_profile, model="full", min_face_px=0)


def test_one_face_keeps_one_id_over_a_moving_clip(detector: FaceDetector) -> None:
    frames = moving_frames(astronaut_bgr(), 24)
    faces = detector.detect_batch(frames)
    assert all(len(f) == 1 for f in faces), [len(f) for f in faces]
    boxes = np.array([f[0].box for f in faces])
    assert np.ptp(boxes[:, 0]) > 10, "the clip must really move the face"
    tr = IoUTracker()
    ids = [tr.update([f.box for f in fs], ts=i / 4) for i, fs in enumerate(faces)]
    assert {i for frame in ids for i in frame} == {1}


def test_two_faces_panning_keep_distinct_stable_ids(detector: FaceDetector) -> None:
    base = mosaic([200, 180], canvas=(300, 700))
    tr = IoUTracker()
    seen: list[dict[int, float]] = []
    for k in range(12):
        frame = np.roll(base, 12 * k, axis=1)  # both faces move 12 px per frame to the right
        fs = detector.detect(frame)
        assert len(fs) == 2
        ids = tr.update([f.box for f in fs], ts=k * 0.25)
        seen.append({i: float(f.box[0]) for i, f in zip(ids, fs, strict=True)})
    assert all(set(s) == {1, 2} for s in seen)
    # identity follows position: the id on the left stays on the left
    left = min(seen[0], key=seen[0].get)
    assert all(min(s, key=s.get) == left for s in seen)


def _shift(box: np.ndarray, dx: float) -> np.ndarray:
    return box + np.array([dx, 0, dx, 0], np.float32)


def test_fast_jump_matches_by_centre_and_gap_expires() -> None:
    tr = IoUTracker(max_age=1.0)
    a = np.array([100, 100, 160, 160], np.float32)
    assert tr.update([a], 0.0) == [1]
    assert tr.update([_shift(a, 25)], 0.2) == [1]  # IoU ≈ 0.41
    assert tr.update([_shift(a, 65)], 0.4) == [1]  # IoU 0.2 but centre only 40 px away on a 60 px face
    assert tr.update([_shift(a, 300)], 0.6) == [2]  # far away: a different face
    assert tr.update([_shift(a, 65)], 3.0) == [3]  # track 1 expired after 1 s unseen
    assert tr.update([], 3.1) == []


def test_tracks_are_bounded_and_per_stream() -> None:
    tr = IoUTracker(max_tracks=8)
    for k in range(50):
        tr.update([np.array([k * 100, 0, k * 100 + 50, 50], np.float32)], ts=k * 0.01)
    assert len(tr.tracks) == 8
    bank = TrackerBank(max_streams=2)
    box = [np.array([0, 0, 50, 50], np.float32)]
    assert bank.update("cam1", box, 0.0) == [1]
    assert bank.update("cam2", box, 0.0) == [1]  # ids are per stream
    assert bank.update("cam1", box, 0.1) == [1]
    bank.update("cam3", box, 0.0)  # evicts the least recently used stream (cam2)
    assert bank.update("cam2", box, 0.2) == [1] and len(bank._trackers) == 2

"""Face mesh: ONNX vs the original TFLite, landmarks agree with the detector, explainable actions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from affectstream.engine.models.face_detector import FaceDetection, FaceDetector
from affectstream.engine.models.face_mesh import EYE_L, EYE_R, LIP_LOWER, LIP_UPPER, FaceMesh
from affectstream.engine.profile import Profile
from media import astronaut_bgr, camera_gray_bgr, no_face_bgr


@pytest.fixture(scope="module")
def models(lite_profile: Path) -> tuple[FaceDetector, FaceMesh]:
    return FaceDetector.from_profile(lite_profile, model="short"), FaceMesh.from_profile(lite_profile)


def test_mesh_onnx_matches_tflite(lite_profile: Path) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    import onnxruntime as ort

    prof = Profile.load(lite_profile)
    crop = cv2.resize(astronaut_bgr()[40:200, 145:305], (192, 192))[:, :, ::-1]
    x = (crop.astype(np.float32) / 255.0)[None]
    it = litert.Interpreter(model_path=str(prof.path("face_mesh_tflite")))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = sorted((it.get_tensor(o["index"]) for o in it.get_output_details()), key=lambda a: -a.size)
    sess = ort.InferenceSession(str(prof.path("face_mesh")), providers=["CPUExecutionProvider"])
    lm, flag = sess.run(None, {"input": np.concatenate([x, x])})  # dynamic batch
    assert lm.shape == (2, 1, 1, 1404)
    assert np.abs(lm[:1] - ref[0]).max() < 1e-3  # landmark pixels on a 192 crop
    assert abs(float(flag[0].ravel()[0]) - float(ref[1].ravel()[0])) < 1e-3


def test_mesh_agrees_with_detector_and_is_rotation_invariant(models: tuple[FaceDetector, FaceMesh]) -> None:
    det, mesh = models
    a = astronaut_bgr()
    rot = cv2.warpAffine(a, cv2.getRotationMatrix2D((256, 256), 30, 1.0), (512, 512))
    images = [a, rot]
    dets = det.detect_batch(images)
    assert [len(d) for d in dets] == [1, 1]
    res = mesh.run(images, dets)
    for d, r in zip(dets, res, strict=True):
        m = r[0]
        assert m is not None and m.presence > 0.9 and m.landmarks.shape == (468, 3)
        # two independent models: the mesh's eye centres sit on the detector's eye keypoints
        right = m.landmarks[list(EYE_R)][:, :2].mean(0)
        left = m.landmarks[list(EYE_L)][:, :2].mean(0)
        kp = d[0].keypoints
        assert min(np.linalg.norm(right - kp[0]), np.linalg.norm(right - kp[1])) < 8
        assert min(np.linalg.norm(left - kp[0]), np.linalg.norm(left - kp[1])) < 8
        mouth = m.landmarks[[LIP_UPPER, LIP_LOWER], :2].mean(0)
        assert np.linalg.norm(mouth - kp[3]) < 10
    a0, a1 = res[0][0].actions, res[1][0].actions
    for k in a0:
        assert abs(a0[k] - a1[k]) <= 0.2 * abs(a0[k]) + 0.01, (k, a0[k], a1[k])


def test_smile_cues_separate_a_smile_from_a_neutral_face(models: tuple[FaceDetector, FaceMesh]) -> None:
    det, mesh = models
    images = [astronaut_bgr(), camera_gray_bgr()]  # broad smile vs a neutral, concentrating face
    res = mesh.run(images, det.detect_batch(images))
    smile, neutral = res[0][0].actions, res[1][0].actions
    assert smile["mouth_corner_lift"] > 0.02 > neutral["mouth_corner_lift"]
    assert smile["smile_width"] > neutral["smile_width"] + 0.1
    assert 0.1 < smile["eye_open"] < 0.6 and 0.1 < neutral["eye_open"] < 0.6


def test_no_face_in_the_box_gives_none_and_empty_input_is_fine(models: tuple[FaceDetector, FaceMesh]) -> None:
    _, mesh = models
    fake = FaceDetection(
        box=np.array([100, 100, 200, 200], np.float32),
        score=0.9,
        keypoints=np.array(
            [[120, 130], [180, 130], [150, 150], [150, 175], [105, 135], [195, 135]], np.float32
        ),
    )
    assert mesh.run([no_face_bgr()], [[fake]]) == [[None]]
    assert mesh.run([no_face_bgr(), astronaut_bgr()], [[], []]) == [[], []]
    with pytest.raises(ValueError, match="detection lists"):
        mesh.run([no_face_bgr()], [])

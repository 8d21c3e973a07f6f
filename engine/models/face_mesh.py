"""468-point face mesh (MediaPipe `face_landmark`, exported to ONNX) and explainable facial actions.

Why: expression scores alone are a black box; the reasoning prompt and the user get *cues* they can
check — mouth open, smile width, mouth-corner lift, eye openness, brow raise — measured on the mesh.
The crop follows MediaPipe's face-landmark graph: a square 1.5× the detection's long side, rotated so the
eyes are level (so the cues are the same for a tilted head), resized to 192×192 RGB in [0, 1]. All faces
of all frames go through ONE runtime call.

The action values are geometric ratios (dimensionless, scale- and rotation-invariant), not calibrated
probabilities: e.g. `smile_width` is mouth-corner distance over outer-eye-corner distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from affectstream.engine.models.face_detector import FaceDetection, as_bgr
from affectstream.engine.runtimes.base import Runtime

SIZE = 192
ROI_SCALE = 1.5
MAX_BATCH = 32

# Canonical face-mesh indices (image-left = the subject's right).
LIP_UPPER, LIP_LOWER, MOUTH_R, MOUTH_L = 13, 14, 61, 291
FOREHEAD, CHIN = 10, 152
EYE_R = (33, 133, 159, 145)  # outer, inner, upper lid, lower lid
EYE_L = (263, 362, 386, 374)
BROW_R, BROW_L = 105, 334


@dataclass(slots=True)
class FaceMeshResult:
    """Landmarks (468, 3) in original-image pixels (z in the same pixel scale), presence 0–1, actions."""

    landmarks: np.ndarray
    presence: float
    actions: dict[str, float] = field(default_factory=dict)


def facial_actions(crop_landmarks: np.ndarray) -> dict[str, float]:
    """Cues from upright (crop-space) landmarks. Each is a ratio of two distances on the same face."""
    p = crop_landmarks[:, :2].astype(np.float64)

    def d(i: int, j: int) -> float:
        return float(np.linalg.norm(p[i] - p[j]))

    face_h = max(d(FOREHEAD, CHIN), 1e-6)
    eyes = max(d(EYE_R[0], EYE_L[0]), 1e-6)
    eye_open = 0.5 * (
        d(EYE_R[2], EYE_R[3]) / max(d(EYE_R[0], EYE_R[1]), 1e-6)
        + d(EYE_L[2], EYE_L[3]) / max(d(EYE_L[0], EYE_L[1]), 1e-6)
    )
    lip_mid_y = 0.5 * (p[LIP_UPPER, 1] + p[LIP_LOWER, 1])
    corners_y = 0.5 * (p[MOUTH_R, 1] + p[MOUTH_L, 1])
    brow = 0.5 * (d(BROW_R, EYE_R[2]) + d(BROW_L, EYE_L[2]))
    return {
        "mouth_open": round(d(LIP_UPPER, LIP_LOWER) / face_h, 4),  # inner-lip gap / face height
        "smile_width": round(d(MOUTH_R, MOUTH_L) / eyes, 4),  # mouth width / outer-eye-corner distance
        "mouth_corner_lift": round(float(lip_mid_y - corners_y) / face_h, 4),  # > 0: corners above lip centre
        "eye_open": round(eye_open, 4),  # lid gap / eye width, mean of both eyes
        "brow_raise": round(brow / eyes, 4),  # brow-to-upper-lid distance / eye distance
    }


def roi_affine(det: FaceDetection) -> np.ndarray:
    """2×3 matrix: image pixels → 192×192 crop (square, 1.5× long side, eyes level)."""
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    side = ROI_SCALE * max(det.width, det.height, 1.0)
    (x0, y0), (x1, y1) = det.keypoints[0], det.keypoints[1]
    theta = math.atan2(y1 - y0, x1 - x0)  # eye-line angle in the image
    k = SIZE / side
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, s], [-s, c]]) * k  # rotate by -theta, scale
    t = np.array([SIZE / 2, SIZE / 2]) - rot @ np.array([cx, cy])
    return np.hstack([rot, t[:, None]]).astype(np.float64)


class FaceMesh:
    """The mesh model through any `Runtime`; `run(images, detections)` batches every face in one call."""

    def __init__(self, runtime: Runtime, *, min_presence: float = 0.5) -> None:
        self.runtime = runtime
        self.min_presence = float(min_presence)
        self._input = runtime.input_names[0] if runtime.input_names else "input"

    @classmethod
    def from_profile(
        cls, profile: Any, *, prefer: str = "auto", threads: int | None = None, **kw: Any
    ) -> FaceMesh:
        from affectstream.engine.profile import Profile
        from affectstream.engine.runtimes.select import load_runtime

        prof = profile if isinstance(profile, Profile) else Profile.load(profile)
        return cls(load_runtime(prof.path("face_mesh"), prefer, threads=threads), **kw)

    def run(
        self, images: Sequence[np.ndarray], detections: Sequence[Sequence[FaceDetection]]
    ) -> list[list[FaceMeshResult | None]]:
        """Per image, per detection: a mesh result, or None where the model says there is no face."""
        if len(images) != len(detections):
            raise ValueError(f"{len(images)} images but {len(detections)} detection lists")
        jobs = [(i, j) for i, dets in enumerate(detections) for j in range(len(dets))]
        out: list[list[FaceMeshResult | None]] = [[None] * len(d) for d in detections]
        bgr: dict[int, np.ndarray] = {}
        for start in range(0, len(jobs), MAX_BATCH):
            chunk = jobs[start : start + MAX_BATCH]
            batch = np.empty((len(chunk), SIZE, SIZE, 3), np.float32)
            mats = []
            for k, (i, j) in enumerate(chunk):
                if i not in bgr:
                    bgr[i] = as_bgr(images[i])
                m = roi_affine(detections[i][j])
                mats.append(m)
                crop = cv2.warpAffine(bgr[i], m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
                np.multiply(crop[:, :, ::-1], 1.0 / 255.0, out=batch[k], casting="unsafe")
            res = self.runtime.run({self._input: batch})
            lms, flags = self._outputs(res)
            for k, (i, j) in enumerate(chunk):
                presence = float(1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, float(flags[k].ravel()[-1]))))))
                if presence < self.min_presence:
                    continue
                crop_lm = lms[k].reshape(-1, 3)[:468].astype(np.float64)
                out[i][j] = FaceMeshResult(
                    landmarks=_to_image(crop_lm, mats[k]), presence=presence, actions=facial_actions(crop_lm)
                )
        return out

    @staticmethod
    def _outputs(res: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if "landmarks" in res and "face_flag" in res:
            return res["landmarks"], res["face_flag"]
        a, b = list(res.values())[:2]
        return (a, b) if a.size > b.size else (b, a)


def _to_image(crop_lm: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Crop-space landmarks → image pixels (inverse of `roi_affine`); z scaled like x and y."""
    inv = cv2.invertAffineTransform(m)
    xy = crop_lm[:, :2] @ inv[:, :2].T + inv[:, 2]
    scale = math.sqrt(abs(np.linalg.det(inv[:, :2])))
    return np.hstack([xy, crop_lm[:, 2:3] * scale]).astype(np.float32)

"""Face detection with MediaPipe BlazeFace (exported to ONNX), batched over many images per call.

Pipeline, following MediaPipe's face_detection graphs so the exported network behaves as it does there:
letterbox each image to the model's square input (keeping aspect ratio, so faces are not squashed),
run *all* images of a batch in ONE runtime call, decode the regressors against SSD anchors
(`ssd_anchors_calculator` rules), keep scores above `min_score`, merge overlapping boxes with weighted
NMS (MediaPipe's `WEIGHTED` suppression: the box is the score-weighted mean of its cluster, which is
steadier frame to frame than plain NMS), map back to the original pixels, drop faces smaller than
`min_face_px` and keep the `max_faces` largest.

Any image the engine may see is accepted: gray (H×W or H×W×1), BGR, BGRA, float or uint8, tiny or
extremely elongated; an empty image gives no faces. Anything that is not an image raises one-line
`ValueError`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from affectstream.engine.runtimes.base import Runtime

# MediaPipe SSD anchor options (face_detection_short_range.pbtxt / face_detection_full_range.pbtxt).
# Both use fixed-size anchors (w = h = 1), so only the anchor centres matter.
ANCHOR_OPTIONS: dict[str, dict[str, Any]] = {
    "short": {"size": 128, "strides": (8, 16, 16, 16), "interpolated": 1.0, "offset": 0.5},
    "full": {"size": 192, "strides": (4,), "interpolated": 0.0, "offset": 0.5},
}
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion
MAX_BATCH = 32  # images per runtime call: bounds the input buffer (32×192×192×3 float = 14 MB)


@dataclass(slots=True)
class FaceDetection:
    """One face in original-image pixels: box x1,y1,x2,y2 (float), score 0–1, 6 keypoints (x, y)."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(self.score, 4),
            "keypoints": [[round(float(x), 1), round(float(y), 1)] for x, y in self.keypoints],
        }


def ssd_anchors(model: str) -> np.ndarray:
    """Anchor centres (N, 2) in normalised [0, 1] input coordinates, in the network's output order.

    MediaPipe groups consecutive layers with the same stride onto one feature map; each layer gives one
    anchor per aspect ratio (here just 1.0) plus one interpolated-scale anchor when that option is > 0.
    """
    opt = ANCHOR_OPTIONS[model]
    size, strides, offset = opt["size"], opt["strides"], opt["offset"]
    per_layer = 1 + (1 if opt["interpolated"] > 0 else 0)
    centres: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = per_layer * (j - i)
        fm = math.ceil(size / strides[i])
        ys, xs = np.mgrid[0:fm, 0:fm]
        c = np.stack([(xs + offset) / fm, (ys + offset) / fm], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(c, n, axis=1).reshape(-1, 2))
        i = j
    return np.concatenate(centres).astype(np.float32)


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Any plausible frame → contiguous H×W×3 uint8 BGR (gray replicated, alpha dropped, floats scaled)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(image).__name__}")
    img = image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"frame must be H×W, H×W×1, H×W×3 or H×W×4, got shape {image.shape}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype == np.uint16:  # 16-bit sensors/PNGs: keep the top byte rather than saturating
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.number):
            raise ValueError(f"frame dtype {img.dtype} is not numeric")
        f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if np.issubdtype(img.dtype, np.floating) and f.size and f.max() <= 1.0:
            f = f * 255.0  # float images in [0, 1]
        img = np.clip(f, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


@dataclass(slots=True)
class _Letterbox:
    scale: float  # model pixels per image pixel
    pad_x: float  # model pixels of padding on the left
    pad_y: float


def letterbox_into(image: np.ndarray, out: np.ndarray) -> _Letterbox:
    """Resize `image` (BGR uint8) to fit `out` (S×S×3 float32, RGB in [-1, 1]) centred, zero-padded."""
    size = out.shape[0]
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    if scale < 0.5:
        # Area averaging straight from 1080p is slow; bilinear to twice the target, then a 2× area step, is
        # an order of magnitude cheaper and keeps the anti-aliasing (bench/RESULTS.md, face: large frames).
        mid = cv2.resize(image, (2 * nw, 2 * nh), interpolation=cv2.INTER_LINEAR)
        resized = cv2.resize(mid, (nw, nh), interpolation=cv2.INTER_AREA)
    else:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (nw, nh), interpolation=interp)
    px, py = (size - nw) // 2, (size - nh) // 2
    out.fill(0.0)  # 0 = mid-grey in [-1, 1], as MediaPipe pads
    # BGR → RGB and [0, 255] → [-1, 1] in one pass, written straight into the batch buffer.
    np.multiply(resized[:, :, ::-1], 1.0 / 127.5, out=out[py : py + nh, px : px + nw], casting="unsafe")
    out[py : py + nh, px : px + nw] -= 1.0
    return _Letterbox(scale=nw / w if w else scale, pad_x=float(px), pad_y=float(py))


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe WEIGHTED suppression: each cluster (IoU > `iou` with its best box) → score-weighted mean."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    alive = np.ones(len(scores), dtype=bool)
    out = []
    ious = _iou_matrix(boxes, boxes) if len(boxes) else np.zeros((0, 0))
    for i in range(len(scores)):
        if not alive[i]:
            continue
        members = alive & (ious[i] > iou)
        members[i] = True
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kp = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[i]), kp))
        alive &= ~members
    return out


class FaceDetector:
    """BlazeFace through any `Runtime`. `detect_batch` runs all images in one call (chunks of MAX_BATCH)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        model: str = "short",
        min_score: float = 0.5,
        min_face_px: float = 20.0,
        max_faces: int = 4,
        nms_iou: float = 0.3,
    ) -> None:
        if model not in ANCHOR_OPTIONS:
            raise ValueError(f"unknown face model {model!r} (short|full)")
        if max_faces < 1:
            raise ValueError(f"max_faces must be ≥ 1, got {max_faces}")
        self.runtime = runtime
        self.model = model
        self.size = int(ANCHOR_OPTIONS[model]["size"])
        self.anchors = ssd_anchors(model)
        self.min_score = float(min_score)
        self.min_face_px = float(min_face_px)
        self.max_faces = int(max_faces)
        self.nms_iou = float(nms_iou)
        self._input = runtime.input_names[0] if runtime.input_names else "input"
        # One reusable input buffer per thread: no per-call allocation, and two streams' workers calling
        # the same detector concurrently never write into each other's batch.
        self._local = threading.local()

    @classmethod
    def from_profile(
        cls,
        profile: Any,
        *,
        model: str = "short",
        prefer: str = "auto",
        threads: int | None = None,
        **options: Any,
    ) -> FaceDetector:
        """Load `face_short`/`face_full` from a profile (a `Profile`, its folder or its name)."""
        from affectstream.engine.profile import Profile
        from affectstream.engine.runtimes.select import load_runtime

        prof = profile if isinstance(profile, Profile) else Profile.load(profile)
        path: Path = prof.path(f"face_{model}")
        return cls(load_runtime(path, prefer, threads=threads), model=model, **options)

    def detect(self, image: np.ndarray) -> list[FaceDetection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        """Faces per image, largest first. Empty images give []; bad ones raise ValueError (one line)."""
        bgr = [as_bgr(im) for im in images]
        results: list[list[FaceDetection]] = [[] for _ in bgr]
        todo = [i for i, im in enumerate(bgr) if im.shape[0] > 0 and im.shape[1] > 0]
        for start in range(0, len(todo), MAX_BATCH):
            chunk = todo[start : start + MAX_BATCH]
            buf = getattr(self._local, "buf", None)
            if buf is None or buf.shape[0] < len(chunk):
                buf = self._local.buf = np.zeros((len(chunk), self.size, self.size, 3), np.float32)
            batch = buf[: len(chunk)]
            boxes = [letterbox_into(bgr[i], batch[k]) for k, i in enumerate(chunk)]
            out = self.runtime.run({self._input: batch})
            reg, cls_ = self._outputs(out)
            for k, i in enumerate(chunk):
                results[i] = self._decode(reg[k], cls_[k], boxes[k], bgr[i].shape[:2])
        return results

    def _outputs(self, out: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if "regressors" in out and "classificators" in out:
            return out["regressors"], out["classificators"]
        a, b = list(out.values())[:2]
        return (a, b) if a.shape[-1] > b.shape[-1] else (b, a)

    def _decode(
        self, reg: np.ndarray, logits: np.ndarray, lb: _Letterbox, shape: tuple[int, int]
    ) -> list[FaceDetection]:
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0], -80.0, 80.0)))
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        s = float(self.size)
        r, anc = reg[keep].astype(np.float32), self.anchors[keep]
        cx = r[:, 0] / s + anc[:, 0]
        cy = r[:, 1] / s + anc[:, 1]
        w, h = r[:, 2] / s, r[:, 3] / s
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        kps = r[:, 4 : 4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / s + anc[:, None, :]
        ih, iw = shape
        faces = []
        for box, score, kp in weighted_nms(boxes, scores[keep], kps, self.nms_iou):
            # normalised model coords → model pixels → original image pixels
            bx = (box * s - [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]) / lb.scale
            bx = np.clip(bx, 0, [iw, ih, iw, ih]).astype(np.float32)
            k = ((kp * s - [lb.pad_x, lb.pad_y]) / lb.scale).astype(np.float32)
            f = FaceDetection(box=bx, score=score, keypoints=k)
            if min(f.width, f.height) >= self.min_face_px and f.area > 0:
                faces.append(f)
        faces.sort(key=lambda f: -f.area)
        return faces[: self.max_faces]

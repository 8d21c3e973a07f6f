"""INT8 calibration (and accuracy-check) batches made from REAL windows of a media file.

INT8 scales are only as good as the activations they were measured on: random tensors or a blank
frame give ranges that clip real faces. So batches here come from the same path the engine uses —
decode a clip, cut it with the engine's `Windower` (2 s windows every 1 s, 8 frames at segment
midpoints, R1-Omni's rule) — and are then preprocessed *exactly* like each encoder's own inference code:

- BlazeFace (`face_short` 128×128, `face_full` 192×192): whole frame letterboxed (aspect kept, centred,
  borders 0 = mid-grey) to the square input, RGB, `x / 127.5 - 1` → [-1, 1], NHWC — MediaPipe's input
  spec, produced by `engine/models/face_detector.letterbox_into` itself.
- FER mini-Xception (`expression`): face crops (square box + 10 % margin, gray, 64×64, see
  `engine/models/expression.py`), `(x / 255 - 0.5) * 2` → [-1, 1], NCHW `(N, 1, 64, 64)`.

Faces for the expression batches come from a detector callable (default: the profile's face detector
when that module is importable); a clip without faces is refused with a clear error rather than
calibrating the expression model on background texture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from affectstream.engine.hashing import sha256_bytes, sha256_file
from affectstream.engine.types import SAMPLE_RATE, AudioChunk, VideoFrame, Window

PREPROC_VERSION = 1  # bump when any preprocessing below changes: it is part of the calibration id


class CalibrationError(RuntimeError):
    """Calibration data cannot be made (bad source, no faces, ...); the message says why."""


# --------------------------------------------------------------------------- real windows
def read_windows(
    source: Path,
    *,
    length: float = 2.0,
    hop: float = 1.0,
    n_frames: int = 8,
    max_windows: int | None = None,
    max_side: int | None = None,
    stream_id: str = "calib",
) -> list[Window]:
    """Decode `source` with PyAV and cut it with the engine's own `Windower` (same grid, same frames).

    Frames become `VideoFrame`s (BGR) and audio is resampled to 16 kHz mono `AudioChunk`s in demux
    order, exactly what the file source hands the windower. Used offline (calibration, accuracy
    checks): `max_windows` stops decoding early and `max_side` downscales larger frames (INTER_AREA),
    so memory stays bounded for long or high-resolution clips.
    """
    import av
    from affectstream.streams.windower import Windower

    source = Path(source)
    if not source.is_file():
        raise CalibrationError(f"calibration source not found: {source}")
    win = Windower(stream_id, length, hop, n_frames)
    out: list[Window] = []
    n_video = 0
    try:
        with av.open(str(source)) as c:
            vs = c.streams.video[0] if c.streams.video else None
            as_ = c.streams.audio[0] if c.streams.audio else None
            if vs is None:
                raise CalibrationError(f"{source}: no video track (calibration needs frames)")
            res = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if as_ else None
            for frame in c.decode(*(s for s in (vs, as_) if s is not None)):
                items: list[VideoFrame | AudioChunk] = []
                if isinstance(frame, av.VideoFrame):
                    ts = float(frame.time) if frame.time is not None else n_video / 25.0
                    img = frame.to_ndarray(format="bgr24")
                    if max_side and max(img.shape[:2]) > max_side:
                        f = max_side / max(img.shape[:2])
                        size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
                        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                    items.append(VideoFrame(ts, img, n_video))
                    n_video += 1
                elif res is not None:
                    for r in res.resample(frame):
                        t = float(r.time) if r.time is not None else 0.0
                        items.append(AudioChunk(t, r.to_ndarray().reshape(-1).astype(np.float32)))
                for it in items:
                    out += win.push(it)
                if max_windows is not None and len(out) >= max_windows:
                    return out[:max_windows]
    except av.error.FFmpegError as e:
        raise CalibrationError(f"{source}: cannot decode ({e})") from e
    if n_video == 0:
        raise CalibrationError(f"{source}: no decodable video frames")
    out += win.flush()
    return out if max_windows is None else out[:max_windows]


def source_id(source: Path) -> str:
    """Identity of the calibration media: its content hash, so a renamed file still hits the cache."""
    return sha256_file(source)


# --------------------------------------------------------------------------- preprocessing
def blazeface_input(images_bgr: Sequence[np.ndarray], size: int) -> np.ndarray:
    """(N, size, size, 3) float32 RGB in [-1, 1], letterboxed: BlazeFace's input, made by the detector's
    own `letterbox_into` so calibration can never drift from inference preprocessing."""
    from affectstream.engine.models.face_detector import as_bgr, letterbox_into

    batch = np.zeros((len(images_bgr), size, size, 3), np.float32)
    for k, im in enumerate(images_bgr):
        letterbox_into(as_bgr(im), batch[k])
    return batch


def expression_input(crops_gray: np.ndarray) -> np.ndarray:
    """(N, 64, 64) uint8 gray crops → (N, 1, 64, 64) float32 in [-1, 1] (fer's `(x/255 - 0.5) * 2`)."""
    x = np.asarray(crops_gray, dtype=np.float32)
    return ((x * (1.0 / 255.0) - 0.5) * 2.0)[:, None]


# images → per image the faces found: `FaceDetection`s (box x1y1x2y2 + keypoints) or bare boxes.
FaceBoxes = Callable[[list[np.ndarray]], list[list[Any]]]


def profile_face_boxes(profile_dir: Path) -> FaceBoxes:
    """Faces from the profile's own detector (short range, ONNX Runtime CPU: the reference)."""
    try:
        from affectstream.engine.models.face_detector import FaceDetector
    except ImportError as e:
        raise CalibrationError(f"face detector not available to find faces for calibration ({e})") from e
    det = FaceDetector.from_profile(Path(profile_dir), model="short", prefer="cpu")

    def faces(images: list[np.ndarray]) -> list[list[Any]]:
        return det.detect_batch(images)

    return faces


def _box(face: Any) -> np.ndarray:
    return np.asarray(getattr(face, "box", face), np.float32)


def face_mesh_input(images_bgr: Sequence[np.ndarray], faces: Sequence[Sequence[Any]]) -> np.ndarray:
    """(K, 192, 192, 3) float32 RGB in [0, 1]: each face warped upright by `engine/models/face_mesh`'s
    own ROI rule (square, 1.5× the box, eyes level), as `FaceMesh.run` feeds the mesh model."""
    from affectstream.engine.models.face_detector import as_bgr
    from affectstream.engine.models.face_mesh import SIZE, roi_affine

    crops = []
    for img, dets in zip(images_bgr, faces, strict=True):
        bgr = as_bgr(img)
        for d in dets:
            crop = cv2.warpAffine(
                bgr, roi_affine(d), (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
            )
            crops.append(crop[:, :, ::-1].astype(np.float32) / 255.0)
    return np.stack(crops) if crops else np.zeros((0, SIZE, SIZE, 3), np.float32)


# --------------------------------------------------------------------------- batches per encoder
@dataclass(slots=True)
class CalibrationSet:
    """Fixed-size batches for one encoder input, plus the id that keys its calibration cache."""

    component: str
    input_name: str
    batches: list[np.ndarray]
    calibration_id: str
    n_samples: int  # real samples before padding the last batch

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        for b in self.batches:
            yield {self.input_name: b}


BLAZEFACE_SIZES = {"face_short": 128, "face_full": 192}


RECIPES = ("face_short", "face_full", "face_mesh", "expression", "omni_vision", "omni_audio")


def has_recipe(component: str) -> bool:
    """Whether real-window calibration data can be made for this encoder (its input is raw media)."""
    return component in RECIPES


def component_samples(
    component: str,
    windows: Sequence[Window],
    face_boxes: FaceBoxes | None = None,
    input_dims: Sequence[int] | None = None,
) -> np.ndarray:
    """All preprocessed samples of one encoder from real windows (frames de-duplicated by index).

    r1-omni encoders use `engine/omni/preprocess.py` itself: SigLIP pixels (pad to square, bicubic,
    [-1, 1], NCHW) per frame and Whisper log-mel features (fast mode: the window's own length) per
    window; `input_dims` (the profile's opt shape) supplies image size and mel bins.
    """
    if component == "omni_audio":
        from affectstream.engine.omni.preprocess import whisper_features

        n_mels = int(input_dims[1]) if input_dims else 128
        mels = [whisper_features(w.audio, "fast", n_mels) for w in windows if w.audio.size]
        if not mels:
            raise CalibrationError("no audio in the calibration source (omni_audio needs speech)")
        n = min(m.shape[1] for m in mels)  # equal-length windows; trim the odd last one
        return np.stack([m[:, :n] for m in mels])
    seen: set[int] = set()
    frames = []
    for w in windows:
        for f in w.frames:
            if f.index not in seen:
                seen.add(f.index)
                frames.append(f.image)
    if component in BLAZEFACE_SIZES:
        return blazeface_input(frames, BLAZEFACE_SIZES[component])
    if component == "omni_vision":
        from affectstream.engine.omni.preprocess import frames_to_pixels

        size = int(input_dims[2]) if input_dims else 224
        return frames_to_pixels(frames, size=size, aspect="pad", num=len(frames))
    if component == "expression":
        if face_boxes is None:
            raise CalibrationError("expression calibration needs a face detector (face_boxes)")
        from affectstream.engine.models.expression import crop_face, to_gray

        crops = []
        for img, faces in zip(frames, face_boxes(frames), strict=True):
            gray = to_gray(img)
            crops += [crop_face(gray, _box(f)) for f in faces]
        if not crops:
            raise CalibrationError("no faces found in the calibration source; use a clip with visible faces")
        return expression_input(np.stack(crops))
    if component == "face_mesh":
        if face_boxes is None:
            raise CalibrationError("face_mesh calibration needs a face detector (face_boxes)")
        mesh = face_mesh_input(frames, face_boxes(frames))
        if not len(mesh):
            raise CalibrationError("no faces found in the calibration source; use a clip with visible faces")
        return mesh
    raise CalibrationError(f"no calibration recipe for component {component!r}")


def make_calibration_set(
    component: str,
    input_name: str,
    source: Path,
    *,
    batch_size: int,
    max_batches: int = 16,
    face_boxes: FaceBoxes | None = None,
    windows: Sequence[Window] | None = None,
    input_dims: Sequence[int] | None = None,
) -> CalibrationSet:
    """Real-window batches of exactly `batch_size` (one fixed shape: calibration and the accuracy
    check run the encoder at its optimisation-profile batch).

    If the clip yields fewer samples than a whole batch, samples are repeated cyclically to fill it;
    `n_samples` reports how many were real and distinct.
    """
    if batch_size < 1 or max_batches < 1:
        raise ValueError("batch_size and max_batches must be >= 1")
    wins = list(windows) if windows is not None else read_windows(source)
    samples = component_samples(component, wins, face_boxes, input_dims)
    n = len(samples)
    if n == 0:
        raise CalibrationError(f"{source}: no samples for {component}")
    n_batches = min(max_batches, max(1, -(-n // batch_size)))
    idx = np.arange(n_batches * batch_size) % n
    batches = [np.ascontiguousarray(samples[idx[i : i + batch_size]]) for i in range(0, len(idx), batch_size)]
    cid = sha256_bytes(
        f"{source_id(Path(source))}|{component}|{batch_size}|{n_batches}|v{PREPROC_VERSION}".encode()
    )
    return CalibrationSet(component, input_name, batches, cid, n)

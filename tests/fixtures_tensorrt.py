"""Fixtures for the TensorRT / runtime-selection / container tests.

Small ONNX graphs are written with `onnx.helper` (no torch import: milliseconds), with a dynamic batch
axis and — for the sequence model — a dynamic sequence axis, so optimisation-profile logic is tested on
the same kinds of dynamic dims the real encoders have. The real encoders come from `lite_profile`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def make_conv_classifier(path: Path, *, seed: int = 0, classes: int = 7) -> Path:
    """(B, 1, 64, 64) → Conv 3×3 → ReLU → GlobalAvgPool → Flatten → Gemm → Softmax → (B, classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b")
    fw = numpy_helper.from_array(rng.normal(0, 0.5, (classes, 8)).astype(np.float32), "fw")
    fb = numpy_helper.from_array(rng.normal(0, 0.1, (classes,)).astype(np.float32), "fb")
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 64, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        [w, b, fw, fb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_seq_model(path: Path) -> Path:
    """(B, T, 16) → MatMul (16×8) → Relu → (B, T, 8): a dynamic batch AND a dynamic sequence axis."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(1).normal(0, 1, (16, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "tiny_seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    return make_conv_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def tiny_seq_onnx(tmp_path: Path) -> Path:
    return make_seq_model(tmp_path / "seq.onnx")


@pytest.fixture(scope="session")
def calib_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s clip (real astronaut face, real speech), square 384×384, as the engine would ingest."""
    from media import write_clip

    return write_clip(tmp_path_factory.mktemp("calib") / "face.mp4", seconds=4.0, fps=15)


def trt_missing_reason() -> str | None:
    """Why TensorRT tests cannot run here (None when they can)."""
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as e:
        return f"TensorRT not installed ({e}); these run on GPU machines (bench/gpu_check_trt.sh)"
    try:
        import torch
    except ImportError:
        return "torch not installed (CUDA buffers for TensorRT)"
    if not torch.cuda.is_available():
        return "no CUDA device visible"
    return None

"""Native TensorRT runtime: batching/shape rules everywhere; real builds only where TensorRT and a GPU exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.runtimes.base import RuntimeUnavailable
from affectstream.engine.runtimes.plan_cache import ShapeRange
from affectstream.engine.runtimes.tensorrt import batch_slices, check_shape, import_tensorrt, split_batches
from fixtures_tensorrt import trt_missing_reason

TRT_MISSING = trt_missing_reason()


def test_batches_larger_than_the_profile_are_chunked() -> None:
    assert batch_slices(70, 32) == [slice(0, 32), slice(32, 64), slice(64, 70)]
    assert batch_slices(32, 32) == [slice(0, 32)]
    assert batch_slices(1, 32) == [slice(0, 1)]
    with pytest.raises(ValueError):
        batch_slices(5, 0)
    x = np.arange(70 * 3, dtype=np.float32).reshape(70, 3)
    n, chunks = split_batches({"input": x}, ["input"], 32)
    assert n == 70 and [len(c["input"]) for c in chunks] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate([c["input"] for c in chunks]), x)


def test_input_mismatches_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="missing"):
        split_batches({"a": np.zeros((2, 3))}, ["a", "b"], 8)
    with pytest.raises(ValueError, match="disagree on batch"):
        split_batches({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))}, ["a", "b"], 8)
    rng = ShapeRange((1, 3, 128, 128), (8, 3, 128, 128), (32, 3, 128, 128))
    check_shape("input", (8, 3, 128, 128), rng)
    with pytest.raises(ValueError, match=r"dim 2 = 64 outside the engine's profile \[128, 128\]"):
        check_shape("input", (8, 3, 64, 128), rng)
    with pytest.raises(ValueError, match="rank 3"):
        check_shape("input", (8, 3, 128), rng)


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT is available here")
def test_missing_tensorrt_is_reported_not_crashed(tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match="tensorrt: Python package not installed"):
        import_tensorrt()
    from affectstream.engine.runtimes.tensorrt import TensorRTRuntime

    with pytest.raises(RuntimeUnavailable, match="tensorrt"):
        TensorRTRuntime(tmp_path / "x.engine")


@pytest.mark.gpu
@pytest.mark.skipif(TRT_MISSING is not None, reason=TRT_MISSING or "")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_load_and_match_onnxruntime(tiny_onnx: Path, tmp_path: Path, precision: str) -> None:
    """GPU machines: build an engine the way the exporter does (precision graph + flags), run batches
    above the profile max, compare with ORT CPU. (Mechanics test: the INT8 scales come from synthetic
    batches here; real-window calibration is covered by the exporter and bench/gpu_check_trt.sh.)"""
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.engine.runtimes.plan_cache import PlanCache, PlanKey, detect_device
    from affectstream.engine.runtimes.select import load_runtime
    from affectstream.engine.runtimes.tensorrt import TensorRTRuntime
    from affectstream.export.accuracy import compare_runtimes
    from affectstream.export.precision import quantize_int8_qdq, to_fp16_onnx
    from affectstream.export.tensorrt import build_plan_bytes, weakly_typed_builder

    prof = {"input": ShapeRange((1, 1, 64, 64), (4, 1, 64, 64), (8, 1, 64, 64))}
    rng = np.random.default_rng(1)
    graph = tiny_onnx
    if precision == "fp16" and not weakly_typed_builder():
        graph = to_fp16_onnx(tiny_onnx, tmp_path / "tiny_fp16.onnx")
    if precision == "int8":
        feeds = [{"input": rng.uniform(-1, 1, (4, 1, 64, 64)).astype(np.float32)} for _ in range(4)]
        graph = quantize_int8_qdq(
            tiny_onnx, feeds, tmp_path / "tiny_int8.onnx", calibration_id="gpu-test"
        ).path
    data = build_plan_bytes(
        graph,
        precision=precision,
        profile=prof,
        log_path=tmp_path / "build.log",
        timing_cache=tmp_path / "timing.cache",
    )
    assert (tmp_path / "timing.cache").stat().st_size > 0 and (tmp_path / "build.log").exists()
    dev = detect_device()
    cache = PlanCache(tmp_path / "engines")
    path = cache.store(PlanKey.create("tiny", tiny_onnx, dev, precision, prof), data)
    rt = TensorRTRuntime(path)
    assert rt.max_batch == 8 and rt.describe().precision == precision
    x = np.random.default_rng(0).uniform(-1, 1, (19, 1, 64, 64)).astype(np.float32)
    feeds = [{"input": x}]
    rep = compare_runtimes(OrtRuntime(tiny_onnx, ["CPUExecutionProvider"], 1), rt, feeds, precision)
    assert rep.n_samples == 19 and rep.passed(), rep.summary()
    # Selection finds the engine through the cache (component = ONNX file stem).
    sel = load_runtime(tiny_onnx, cache_root=tmp_path / "engines")
    assert sel.describe().name == "tensorrt"
    rt.close()

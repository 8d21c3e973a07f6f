"""ONNX Runtime / torch runtimes: real providers reported, clear errors for bad model files, parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.engine.runtimes.onnx import OrtRuntime
from affectstream.engine.runtimes.torch_rt import TorchRuntime


def test_reports_providers_the_session_really_got(lite_prof):
    import onnxruntime as ort

    rt = OrtRuntime(lite_prof.path("expression"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    info = rt.describe()
    assert info.name == "onnxruntime"
    assert info.providers == rt.session.get_providers()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert info.providers == ["CPUExecutionProvider"]
        assert info.device == "cpu"
        assert any("CUDAExecutionProvider" in r for r in info.fallback_reasons)


def test_threads_are_pinned(lite_prof):
    rt = OrtRuntime(lite_prof.path("expression"), threads=1)
    assert rt.session.get_session_options().intra_op_num_threads == 1
    rt2 = OrtRuntime(lite_prof.path("expression"), threads=2)
    assert rt2.session.get_session_options().intra_op_num_threads == 2


def test_dynamic_batch_and_dtype_cast(lite_prof):
    rt = OrtRuntime(lite_prof.path("expression"))
    for n in (1, 3, 17):
        out = rt.run({"input": np.zeros((n, 1, 64, 64), np.float64)})  # float64 is cast, not rejected
        assert out["probs"].shape == (n, 7)
        np.testing.assert_allclose(out["probs"].sum(1), 1.0, atol=1e-5)


def test_missing_input_is_named(lite_prof):
    rt = OrtRuntime(lite_prof.path("expression"))
    with pytest.raises(ValueError, match="missing input 'input'"):
        rt.run({"x": np.zeros((1, 1, 64, 64), np.float32)})


def test_missing_file(tmp_path: Path):
    with pytest.raises(ModelFileError, match=r"missing: .*nope\.onnx.*affectstream models prepare"):
        OrtRuntime(tmp_path / "nope.onnx")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_file_is_reported_by_name(lite_prof, tmp_path: Path, damage: str):
    good = lite_prof.path("expression").read_bytes()
    bad = tmp_path / f"{damage}.onnx"
    bad.write_bytes(
        {"garbage": b"\x00not an onnx model" * 100, "truncated": good[: len(good) // 2], "empty": b""}[damage]
    )
    with pytest.raises(ModelFileError) as ei:
        OrtRuntime(bad)
    msg = str(ei.value)
    assert str(bad) in msg and "affectstream models prepare" in msg
    assert "\n" not in msg


def test_torch_runtime_matches_ort(lite_prof, fer_torch):
    x = np.random.default_rng(1).uniform(-1, 1, (5, 1, 64, 64)).astype(np.float32)
    ort_out = OrtRuntime(lite_prof.path("expression")).run({"input": x})["probs"]
    trt = TorchRuntime(fer_torch, ["input"], ["probs"], threads=1)
    assert trt.describe().name == "torch"
    torch_out = trt.run({"input": x})["probs"]
    assert np.abs(ort_out - torch_out).max() <= 1e-4


def test_torch_cuda_unavailable_is_a_clear_error(fer_torch):
    import torch
    from affectstream.engine.runtimes.base import RuntimeUnavailable

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the unavailable path cannot be exercised")
    with pytest.raises(RuntimeUnavailable, match="CUDA"):
        TorchRuntime(fer_torch, ["input"], ["probs"], device="cuda")


@pytest.mark.gpu
def test_torch_cuda_matches_cpu(fer_torch):
    import copy

    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here (torch.cuda.is_available() is False)")
    x = np.random.default_rng(2).uniform(-1, 1, (4, 1, 64, 64)).astype(np.float32)
    cpu = TorchRuntime(copy.deepcopy(fer_torch), ["input"], ["probs"]).run({"input": x})["probs"]
    gpu_rt = TorchRuntime(copy.deepcopy(fer_torch), ["input"], ["probs"], device="cuda")
    assert gpu_rt.describe().device == "cuda"
    assert np.abs(gpu_rt.run({"input": x})["probs"] - cpu).max() < 1e-3

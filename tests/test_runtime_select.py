"""Runtime selection: TensorRT → ORT-TensorRT → ORT-CUDA → ORT-CPU, every skip explained.

On this machine TensorRT, CUDA and the GPU providers are all absent, which is exactly the situation the
fallback chain must report honestly. The model is the real FER expression encoder from the lite profile.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from affectstream.engine.profile import Profile
from affectstream.engine.runtimes.base import RuntimeUnavailable
from affectstream.engine.runtimes.onnx import OrtRuntime
from affectstream.engine.runtimes.select import load_runtime, recent_selections

NO_GPU_EP = "CUDAExecutionProvider" not in ort.get_available_providers()
pytestmark = pytest.mark.skipif(not NO_GPU_EP, reason="this machine has GPU providers: covered by GPU tests")


@pytest.fixture(scope="module")
def expression_onnx(lite_profile: Path) -> Path:
    return Profile.load(lite_profile).path("expression")


def _tensorrt_absent() -> bool:
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return True
    return False


@pytest.mark.skipif(not _tensorrt_absent(), reason="tensorrt is installed here")
def test_auto_falls_back_to_cpu_with_a_reason_per_step(
    expression_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Under "auto" a fallback is the normal CPU-machine path: logged at INFO (WARNING when chosen explicitly).
    with caplog.at_level(logging.INFO, logger="affectstream.runtime"):
        rt = load_runtime(expression_onnx, threads=1, cache_root=tmp_path)
    info = rt.describe()
    assert info.name == "onnxruntime" and info.device == "cpu"
    assert info.providers[0] == "CPUExecutionProvider"
    reasons = info.fallback_reasons
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("tensorrt: Python package not installed")
    assert reasons[1].startswith(
        "onnxruntime-tensorrt: TensorrtExecutionProvider not in this onnxruntime build"
    )
    assert reasons[2].startswith("onnxruntime-cuda: CUDAExecutionProvider not in this onnxruntime build")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "tensorrt: Python package not installed" in logged and "onnxruntime-cuda" in logged
    fallbacks = [r for r in caplog.records if "runtime fallback" in r.getMessage()]
    assert len(fallbacks) == 3 and all(r.levelno == logging.INFO for r in fallbacks)
    assert info.to_dict()["fallback_reasons"] == reasons
    assert recent_selections()[-1]["model"] == expression_onnx.name
    # The fallback runs the real model and agrees with a directly built CPU session.
    x = np.random.default_rng(0).uniform(-1, 1, (5, 1, 64, 64)).astype(np.float32)
    ref = OrtRuntime(expression_onnx, providers=["CPUExecutionProvider"], threads=1).run({"input": x})
    got = rt.run({"input": x})
    np.testing.assert_array_equal(got["probs"], ref["probs"])
    assert rt.session is not None  # attributes of the wrapped runtime stay reachable
    rt.close()


def test_prefer_cpu_skips_the_gpu_steps_silently(expression_onnx: Path, tmp_path: Path) -> None:
    rt = load_runtime(expression_onnx, "cpu", cache_root=tmp_path)
    assert rt.describe().fallback_reasons == []
    assert rt.describe().providers == ["CPUExecutionProvider"]


def test_prefer_cuda_reports_only_what_it_skipped(
    expression_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="affectstream.runtime"):
        info = load_runtime(expression_onnx, "cuda", cache_root=tmp_path).describe()
    assert [r.levelno for r in caplog.records if "runtime fallback" in r.getMessage()] == [logging.WARNING]
    assert info.providers[0] == "CPUExecutionProvider"
    assert len(info.fallback_reasons) == 1 and info.fallback_reasons[0].startswith("onnxruntime-cuda:")


def test_prefer_onnxruntime_starts_at_the_ort_tensorrt_provider(
    expression_onnx: Path, tmp_path: Path
) -> None:
    reasons = load_runtime(expression_onnx, "onnxruntime", cache_root=tmp_path).describe().fallback_reasons
    assert [r.split(":")[0] for r in reasons] == ["onnxruntime-tensorrt", "onnxruntime-cuda"]


@pytest.mark.skipif(not _tensorrt_absent(), reason="tensorrt is installed here")
def test_strict_tensorrt_raises_with_the_reason(expression_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeUnavailable, match="tensorrt: Python package not installed"):
        load_runtime(expression_onnx, "tensorrt", strict=True, cache_root=tmp_path)
    with pytest.raises(RuntimeUnavailable, match="onnxruntime-cuda"):
        load_runtime(expression_onnx, "cuda", strict=True, cache_root=tmp_path)


@pytest.mark.skipif(not _tensorrt_absent(), reason="tensorrt is installed here")
def test_a_plan_file_needs_tensorrt(tmp_path: Path) -> None:
    eng = tmp_path / "face_short.engine"
    eng.write_bytes(b"\0" * 16)
    with pytest.raises(RuntimeUnavailable, match="tensorrt: Python package not installed"):
        load_runtime(eng)


def test_torch_preference_for_an_onnx_file_is_explained(expression_onnx: Path, tmp_path: Path) -> None:
    reasons = load_runtime(expression_onnx, "torch", cache_root=tmp_path).describe().fallback_reasons
    assert reasons[0].startswith("torch: not a runtime for ONNX files")


def test_unknown_preference_is_a_clear_error(expression_onnx: Path) -> None:
    with pytest.raises(ValueError, match="unknown runtime 'tpu'"):
        load_runtime(expression_onnx, "tpu")


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    from affectstream.engine.runtimes.base import ModelFileError

    with pytest.raises(ModelFileError, match=r"missing\.onnx"):
        load_runtime(tmp_path / "missing.onnx", "cpu")


def test_ort_tensorrt_ep_options_keep_caches_per_device(tmp_path: Path) -> None:
    from affectstream.engine.runtimes.select import ort_trt_options

    opts = ort_trt_options(tmp_path / "face_short.onnx", tmp_path / "engines", "fp16")
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"] and opts["trt_fp16_enable"]
    cache = Path(opts["trt_engine_cache_path"])
    assert cache.is_dir() and cache.name == "face_short"
    assert cache.parent.parent == tmp_path / "engines" / "ort-trt"  # …/ort-trt/<device>/<model>
    assert not ort_trt_options(tmp_path / "m.onnx", tmp_path, "fp32")["trt_fp16_enable"]

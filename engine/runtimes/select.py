"""Pick the best runtime available for an exported model, and say why better ones were skipped.

Chain: native TensorRT plan → ONNX Runtime TensorRT EP → ONNX Runtime CUDA EP → ONNX Runtime CPU.
Every skipped step appends one reason ("tensorrt: Python package not installed", "onnxruntime-cuda:
session fell back to CPUExecutionProvider", ...) to `RuntimeInfo.fallback_reasons` and the log, so
`stats` shows *why* a deployment runs slower than expected instead of silently degrading.

`prefer` starts the chain at a given step ("tensorrt", "onnxruntime" = best ORT provider, "cuda",
"cpu"); steps below it remain as fallbacks unless `strict=True`, in which case the preferred step must
work or `RuntimeUnavailable` is raised with its reason. A `.engine`/`.plan` path always means native
TensorRT (no fallback is possible from a plan file).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.runtimes.base import ModelFileError, Runtime, RuntimeInfo, RuntimeUnavailable

log = logging.getLogger("affectstream.runtime")

STEPS = ("tensorrt", "ort-tensorrt", "ort-cuda", "ort-cpu")
ALIASES = {
    "auto": "tensorrt",
    "tensorrt": "tensorrt",
    "trt": "tensorrt",
    "onnxruntime": "ort-tensorrt",
    "ort": "ort-tensorrt",
    "ort-tensorrt": "ort-tensorrt",
    "cuda": "ort-cuda",
    "ort-cuda": "ort-cuda",
    "cpu": "ort-cpu",
    "ort-cpu": "ort-cpu",
}
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# Load order when several precisions were built: the builder only makes INT8 when asked (calibrated on
# real windows and accuracy-checked), so its presence means the operator chose it.
DEFAULT_PRECISIONS = ("int8", "fp16", "fp32")

_recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=64)
_recent_lock = threading.Lock()


def recent_selections() -> list[dict[str, Any]]:
    """The last selections made in this process (model, runtime info) — for `stats` and debugging."""
    with _recent_lock:
        return list(_recent)


class SelectedRuntime(Runtime):
    """The chosen runtime plus the reasons the better ones were skipped (reported by `describe()`)."""

    def __init__(self, inner: Runtime, reasons: list[str]) -> None:
        self.inner = inner
        self.reasons = list(reasons)
        self.input_names = list(inner.input_names)
        self.output_names = list(inner.output_names)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.inner.run(inputs)

    def describe(self) -> RuntimeInfo:
        info = self.inner.describe()
        seen = list(self.reasons)
        seen += [r for r in info.fallback_reasons if r not in seen]
        info.fallback_reasons = seen
        return info

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # expose e.g. `.session`, `.path` of the wrapped runtime
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _ort_available() -> set[str]:
    import onnxruntime as ort

    return set(ort.get_available_providers())


def _ort_cache_dir(cache_root: Path, model_path: Path, device_id: int) -> Path:
    """Per-GPU folder for ORT's TensorRT-EP caches.

    ORT names its cached engines by graph and TensorRT version but not by GPU model, so a volume moved
    to a different GPU would otherwise offer it a foreign engine; one folder per device name avoids it.
    """
    from affectstream.engine.runtimes.plan_cache import jetson_model

    try:
        from affectstream.engine.runtimes.cuda_mem import cuda_device_info

        name, (major, minor) = cuda_device_info(device_id)
        dev = f"{name}-sm{major}{minor}"
    except RuntimeUnavailable:
        dev = jetson_model() or f"cuda{device_id}"
    slug = "".join(c if c.isalnum() or c in ".-" else "-" for c in dev).strip("-")
    return cache_root / "ort-trt" / slug / model_path.stem


def ort_trt_options(model_path: Path, cache_root: Path, precision: str, device_id: int = 0) -> dict[str, Any]:
    """ONNX Runtime TensorRT-EP options: its own engine + timing caches in our cache volume."""
    d = _ort_cache_dir(cache_root, model_path, device_id)
    d.mkdir(parents=True, exist_ok=True)
    return {
        "device_id": device_id,
        "trt_fp16_enable": precision in ("fp16", "int8"),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(d),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(d),
        "trt_max_workspace_size": 2 << 30,
    }


def _ort_step(
    model_path: Path, step: str, threads: int | None, cache_root: Path, precision: str
) -> tuple[Runtime | None, str | None, str | None]:
    """Try one ORT step. Returns (runtime, reason-if-not-this-step, step-actually-obtained)."""
    from affectstream.engine.runtimes.onnx import OrtRuntime

    want = {"ort-tensorrt": "TensorrtExecutionProvider", "ort-cuda": "CUDAExecutionProvider"}.get(step)
    label = {"ort-tensorrt": "onnxruntime-tensorrt", "ort-cuda": "onnxruntime-cuda"}.get(step, "onnxruntime")
    if want is not None and want not in _ort_available():
        return None, f"{label}: {want} not in this onnxruntime build ({_ort_build_hint()})", None
    providers: list[Any] = []
    if step == "ort-tensorrt":
        providers.append(("TensorrtExecutionProvider", ort_trt_options(model_path, cache_root, precision)))
    if step in ("ort-tensorrt", "ort-cuda"):
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    rt = OrtRuntime(model_path, providers=providers, threads=threads)
    got = rt.describe().providers[:1]
    got_name = got[0] if got else "none"
    if want is None or got_name == want:
        return rt, None, step
    # ORT silently dropped the provider (missing CUDA/TensorRT libraries): say so, keep what it got.
    obtained = {"CUDAExecutionProvider": "ort-cuda", "CPUExecutionProvider": "ort-cpu"}.get(got_name)
    return rt, f"{label}: session fell back to {got_name} (CUDA/TensorRT libraries not loadable)", obtained


def _ort_build_hint() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} has {sorted(ort.get_available_providers())}"


def _trt_step(model_path: Path, cache_root: Path, precision: str | None, device_index: int) -> Runtime:
    """Load the native plan built for this ONNX file on this GPU, or raise RuntimeUnavailable."""
    from affectstream.engine.runtimes.plan_cache import PlanCache, detect_device
    from affectstream.engine.runtimes.tensorrt import TensorRTRuntime, import_tensorrt

    import_tensorrt()
    if not model_path.is_file():
        raise ModelFileError(f"model file missing: {model_path} (run `affectstream models prepare lite`)")
    device = detect_device(device_index)
    precisions = (precision,) if precision else DEFAULT_PRECISIONS
    found = PlanCache(cache_root).find_loadable(model_path.stem, model_path, device, precisions)
    for r in found.reasons[1:] if not found.hit else found.reasons:
        log.info("tensorrt: %s", r)
    if not found.hit:
        raise RuntimeUnavailable(
            f"tensorrt: {found.reasons[0]}; build it with `affectstream export tensorrt PROFILE --fp16`"
        )
    assert found.path is not None
    try:
        return TensorRTRuntime(found.path, device_index=device_index)
    except ModelFileError as e:  # a cached engine that will not deserialize is a cache problem: fall back
        raise RuntimeUnavailable(f"tensorrt: {e}") from e
    except RuntimeUnavailable:
        raise
    except Exception as e:  # CUDA OOM, unsupported I/O dtypes, old TensorRT: fall back, with the reason
        raise RuntimeUnavailable(f"tensorrt: {type(e).__name__}: {e}") from e


def load_runtime(
    model_path: Path,
    prefer: str = "auto",
    *,
    threads: int | None = None,
    precision: str | None = None,
    cache_root: Path | None = None,
    strict: bool = False,
    device_index: int = 0,
) -> Runtime:
    """Load `model_path` with the preferred runtime, falling back with reasons.

    `precision` restricts native TensorRT plans to one precision (default: best built, see
    DEFAULT_PRECISIONS; env `AFFECTSTREAM_TRT_PRECISION`). `cache_root` holds TensorRT plans
    (default `$AFFECTSTREAM_HOME/engines`).
    """
    from affectstream.engine.runtimes.plan_cache import default_cache_root

    model_path = Path(model_path)
    precision = precision or os.environ.get("AFFECTSTREAM_TRT_PRECISION") or None
    root = Path(cache_root) if cache_root else default_cache_root()
    if model_path.suffix in ENGINE_SUFFIXES:
        from affectstream.engine.runtimes.tensorrt import TensorRTRuntime

        return _record(
            model_path, SelectedRuntime(TensorRTRuntime(model_path, device_index=device_index), [])
        )

    key = prefer.lower().strip()
    reasons: list[str] = []
    if key == "torch":
        reasons.append("torch: not a runtime for ONNX files; selecting automatically")
        key = "auto"
    if key not in ALIASES:
        raise ValueError(f"unknown runtime {prefer!r}; choose one of {sorted(ALIASES)}")
    start = STEPS.index(ALIASES[key])
    steps = STEPS[start : start + 1] if strict else STEPS[start:]

    attempts: dict[str, Callable[[], tuple[Runtime | None, str | None, str | None]]] = {}

    def trt() -> tuple[Runtime | None, str | None, str | None]:
        return _trt_step(model_path, root, precision, device_index), None, "tensorrt"

    attempts["tensorrt"] = trt
    for s in STEPS[1:]:
        attempts[s] = lambda s=s: _ort_step(model_path, s, threads, root, precision or "fp16")

    # Falling back is the normal path under "auto" on a CPU machine: say it at INFO (it is also in
    # RuntimeInfo.fallback_reasons and `stats`); an explicit choice that falls back deserves a WARNING.
    level = logging.INFO if key == "auto" else logging.WARNING
    for step in steps:
        try:
            rt, reason, obtained = attempts[step]()
        except RuntimeUnavailable as e:
            reasons.append(str(e))
            log.log(level, "runtime fallback for %s: %s", model_path.name, e)
            continue
        if reason:
            reasons.append(reason)
            log.log(level, "runtime fallback for %s: %s", model_path.name, reason)
        if rt is None:
            continue
        if strict and obtained != step:
            rt.close()
            raise RuntimeUnavailable("; ".join(reasons) or f"{step}: unavailable")
        # An ORT session that silently fell back to a lower provider already *is* that lower step.
        return _record(model_path, SelectedRuntime(rt, reasons))
    raise RuntimeUnavailable(f"no runtime could load {model_path.name}: " + "; ".join(reasons))


def _record(model_path: Path, rt: SelectedRuntime) -> SelectedRuntime:
    info = rt.describe()
    log.info(
        "runtime for %s: %s %s%s",
        model_path.name,
        info.name,
        info.providers[:1],
        f" (skipped: {'; '.join(info.fallback_reasons)})" if info.fallback_reasons else "",
    )
    with _recent_lock:
        _recent.append({"model": model_path.name, **info.to_dict()})
    return rt

"""ONNX Runtime implementation of `Runtime`.

ONNX Runtime silently drops execution providers it cannot load (a CUDA EP without its libraries just
falls back to CPU), so `describe()` reports `session.get_providers()` — what the session REALLY got —
and records each requested-but-missing provider in `fallback_reasons`. Thread counts are pinned
(default 1 intra-op thread) because several encoders and streams share a few cores: letting every
session spawn one thread per core oversubscribes the CPU and makes latency worse, not better. Thread
spinning is off by default for the same reason: a spinning ORT worker burns the core another stream's
decoder or the LLM needs (bench/RESULTS.md, lite perception: thread pinning).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from affectstream.engine.runtimes.base import ModelFileError, Runtime, RuntimeInfo, RuntimeUnavailable

DEFAULT_THREADS = 1

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _provider_name(p: str | tuple[str, dict]) -> str:
    return p[0] if isinstance(p, tuple) else p


class OrtRuntime(Runtime):
    """One `onnxruntime.InferenceSession`, with the providers it really got reported."""

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str | tuple[str, dict]] | None = None,
        threads: int | None = None,
        *,
        fix_command: str = "affectstream models prepare lite",
        spin: bool = False,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
            raise RuntimeUnavailable(f"onnxruntime: not installed ({e})") from e
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"model file missing: {self.path} (run `{fix_command}`)")
        if self.path.stat().st_size == 0:
            raise ModelFileError(f"model file is empty: {self.path} (run `{fix_command}`)")
        requested = list(providers) if providers else ["CPUExecutionProvider"]
        available = set(ort.get_available_providers())
        self._fallback: list[str] = []
        usable: list[str | tuple[str, dict]] = []
        for p in requested:
            name = _provider_name(p)
            if name in available:
                usable.append(p)
            else:
                self._fallback.append(f"{name}: not available in this onnxruntime build")
        if not any(_provider_name(p) == "CPUExecutionProvider" for p in usable):
            usable.append("CPUExecutionProvider")
        self.threads = int(threads) if threads else DEFAULT_THREADS
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=usable)
        except Exception as e:  # ORT raises several private exception types for bad files
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(
                f"model file is damaged or not ONNX: {self.path} ({first[:200]}); run `{fix_command}`"
            ) from e
        self.providers: list[str] = list(self.session.get_providers())
        for p in usable:
            name = _provider_name(p)
            if name not in self.providers:
                self._fallback.append(f"{name}: requested but the session did not get it")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._input_types = {i.name: _ORT_TYPES.get(i.type) for i in self.session.get_inputs()}
        self.input_shapes = {i.name: list(i.shape) for i in self.session.get_inputs()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name not in inputs:
                raise ValueError(f"{self.path.name}: missing input '{name}' (expects {self.input_names})")
            a = np.asarray(inputs[name])
            want = self._input_types.get(name)
            if want is not None and a.dtype != want:
                a = a.astype(want)
            feed[name] = np.ascontiguousarray(a)
        outs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outs, strict=True))

    def describe(self) -> RuntimeInfo:
        p0 = self.providers[0] if self.providers else "CPUExecutionProvider"
        device = "cpu" if p0 == "CPUExecutionProvider" else "cuda:0"
        return RuntimeInfo(
            name="onnxruntime",
            device=device,
            providers=list(self.providers),
            precision="fp32",
            fallback_reasons=list(self._fallback),
        )

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

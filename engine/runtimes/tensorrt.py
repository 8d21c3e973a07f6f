"""Native TensorRT runtime: run a serialized plan built by `affectstream export tensorrt`.

Why native and not only ONNX Runtime's TensorRT execution provider: the native path has no ORT graph
partitioning (nothing silently falls back to CPU), uses our own versioned plan cache, and supports
INT8 plans calibrated on real windows. It uses TensorRT's named-tensor API (`set_input_shape`,
`set_tensor_address`, `execute_async_v3`), available in TensorRT 8.5+ (JetPack 6.0 ships 8.6, later
JetPack 6 releases and NVIDIA's x86-64 containers ship 10.x).

Dynamic batch: the engine's optimisation profile 0 bounds each input's shape. A request whose batch is
larger than the profile's maximum is split into chunks of at most that size and the outputs are
concatenated, so callers (which batch across frames, faces and streams) never need to know the limit.

`tensorrt` and CUDA are imported lazily; constructing the runtime where they are missing raises
`RuntimeUnavailable` whose message says exactly which part is missing.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.runtimes.base import ModelFileError, Runtime, RuntimeInfo, RuntimeUnavailable
from affectstream.engine.runtimes.plan_cache import ShapeRange

log = logging.getLogger("affectstream.runtime")


def import_tensorrt() -> Any:
    """Import the `tensorrt` module or raise RuntimeUnavailable saying why (message is shown in stats)."""
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as e:
        raise RuntimeUnavailable(f"tensorrt: Python package not installed ({e})") from e
    except OSError as e:  # package present but libnvinfer missing / wrong CUDA
        raise RuntimeUnavailable(f"tensorrt: libraries failed to load ({e})") from e
    return trt


def batch_slices(n: int, max_batch: int) -> list[slice]:
    """Split a batch of `n` into consecutive chunks of at most `max_batch` (the profile's limit)."""
    if n < 0 or max_batch < 1:
        raise ValueError(f"bad batch split: n={n}, max_batch={max_batch}")
    return [slice(i, min(n, i + max_batch)) for i in range(0, n, max_batch)] or [slice(0, 0)]


def check_shape(name: str, shape: tuple[int, ...], rng: ShapeRange) -> None:
    """Refuse, with one clear line, a shape outside the engine's optimisation profile."""
    if len(shape) != len(rng.min):
        raise ValueError(f"input {name!r}: rank {len(shape)} but the engine expects rank {len(rng.min)}")
    for axis, (v, lo, hi) in enumerate(zip(shape, rng.min, rng.max, strict=True)):
        if not lo <= v <= hi:
            raise ValueError(
                f"input {name!r}: dim {axis} = {v} outside the engine's profile [{lo}, {hi}] "
                f"(shape {shape}); rebuild with a wider profile"
            )


def split_batches(
    inputs: dict[str, np.ndarray], input_names: list[str], max_batch: int
) -> tuple[int, list[dict[str, np.ndarray]]]:
    """Validate names and a common batch size; return (n, per-chunk feeds)."""
    missing = [n for n in input_names if n not in inputs]
    extra = [n for n in inputs if n not in input_names]
    if missing or extra:
        raise ValueError(f"inputs mismatch: missing {missing}, unexpected {extra}; expected {input_names}")
    sizes = {n: int(np.shape(inputs[n])[0]) if np.ndim(inputs[n]) else -1 for n in input_names}
    batch = {s for s in sizes.values() if s >= 0}
    if len(batch) != 1:
        raise ValueError(f"inputs disagree on batch size (axis 0): {sizes}")
    n = batch.pop()
    return n, [
        {k: inputs[k][s] if np.ndim(inputs[k]) else inputs[k] for k in input_names}
        for s in batch_slices(n, max_batch)
    ]


def read_sidecar_precision(plan_path: Path) -> str:
    """The precision recorded by the plan cache next to the plan (\"unknown\" if absent)."""
    js = Path(plan_path).with_suffix(".json")
    try:
        return str(json.loads(js.read_text())["key"]["precision"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


class TensorRTRuntime(Runtime):
    """A deserialized plan (a TensorRT engine) with its execution context, run on its own stream."""

    def __init__(self, plan_path: Path, *, device_index: int = 0, precision: str | None = None) -> None:
        trt = import_tensorrt()
        from affectstream.engine.runtimes.cuda_mem import require_torch_cuda

        torch = require_torch_cuda()
        self._trt, self._torch = trt, torch
        self._lock = threading.Lock()
        self.path = Path(plan_path)
        if not self.path.is_file():
            raise ModelFileError(
                f"{self.path}: engine file missing; run `affectstream export tensorrt PROFILE`"
            )
        self.device = torch.device(f"cuda:{device_index}")
        self.precision = precision or read_sidecar_precision(self.path)
        self._logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self._logger, "")
        self._rt = trt.Runtime(self._logger)
        with torch.cuda.device(self.device):
            self.engine = self._rt.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ModelFileError(
                    f"{self.path}: TensorRT {trt.__version__} could not deserialize this engine "
                    "(built by another TensorRT version or for another GPU?); rebuild it with "
                    "`affectstream export tensorrt PROFILE`"
                )
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise RuntimeUnavailable(
                    f"tensorrt: could not create an execution context for {self.path.name} (GPU memory?)"
                )
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_in = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_in[n]]
        self.output_names = [n for n in names if not is_in[n]]
        self._np_dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self._profile: dict[str, ShapeRange] = {}
        for n in self.input_names:
            lo, opt, hi = self.engine.get_tensor_profile_shape(n, 0)
            self._profile[n] = ShapeRange(tuple(lo), tuple(opt), tuple(hi))
        self.max_batch = min((r.max[0] for r in self._profile.values() if r.max), default=1)
        log.info(
            "tensorrt: loaded %s (%s, inputs %s, max batch %d)",
            self.path.name,
            self.precision,
            self.input_names,
            self.max_batch,
        )

    @property
    def profile(self) -> dict[str, ShapeRange]:
        return dict(self._profile)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, chunks = split_batches(inputs, self.input_names, self.max_batch)
        if n == 0:
            raise ValueError("empty batch: nothing to run")
        with self._lock:  # one execution context: its shapes/addresses must not interleave across threads
            parts = [self._run_chunk(c) for c in chunks]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts], axis=0) for k in self.output_names}

    def _run_chunk(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch, ctx = self._torch, self.context
        keep: list[Any] = []  # device tensors must outlive the asynchronous execution
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            for name in self.input_names:
                arr = np.ascontiguousarray(feed[name], dtype=self._np_dtype[name])
                check_shape(name, arr.shape, self._profile[name])
                t = torch.from_numpy(arr).to(self.device, non_blocking=True)
                keep.append(t)
                ctx.set_input_shape(name, tuple(arr.shape))
                ctx.set_tensor_address(name, t.data_ptr())
            outs = {}
            for name in self.output_names:
                shape = tuple(ctx.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"tensorrt: output {name!r} shape unresolved {shape}")
                dt = torch.from_numpy(np.empty(0, self._np_dtype[name])).dtype
                t = torch.empty(shape, dtype=dt, device=self.device)
                outs[name] = t
                ctx.set_tensor_address(name, t.data_ptr())
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"tensorrt: execute_async_v3 failed for {self.path.name}")
            host = {k: v.to("cpu", non_blocking=False) for k, v in outs.items()}
        self.stream.synchronize()
        del keep
        return {k: v.numpy() for k, v in host.items()}

    def describe(self) -> RuntimeInfo:
        return RuntimeInfo(
            name="tensorrt",
            device=str(self.device),
            providers=[f"TensorRT {self._trt.__version__}"],
            precision=self.precision,
        )

    def close(self) -> None:
        # Drop the context before the engine, the engine before the runtime (TensorRT's required order).
        with self._lock:  # a run() in another thread must not lose its context mid-call
            for attr in ("context", "engine", "_rt", "stream"):
                if hasattr(self, attr):
                    delattr(self, attr)

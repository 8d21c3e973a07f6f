"""The small CUDA surface the TensorRT runtime and builder need: device info, buffers, a stream.

TensorRT's Python API takes raw device pointers and a stream handle; something must own that memory.
We use PyTorch's CUDA allocator because every target image already ships a CUDA torch (NVIDIA's PyTorch
container on x86-64, JetPack's own wheel on Jetson), so no extra binding (pycuda, cuda-python) has to
match the driver. Everything is imported lazily: on machines without CUDA the callers get
`RuntimeUnavailable` with the reason instead of an ImportError at import time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from affectstream.engine.runtimes.base import RuntimeUnavailable


def require_torch_cuda() -> Any:
    """Return the torch module if it can drive a CUDA device, else raise with the precise reason."""
    try:
        import torch
    except ImportError as e:
        raise RuntimeUnavailable(f"CUDA buffers need torch with CUDA: torch not installed ({e})") from e
    if not torch.cuda.is_available():
        why = "torch is a CPU-only build" if torch.version.cuda is None else "no CUDA device visible"
        raise RuntimeUnavailable(f"CUDA not available: {why} (torch {torch.__version__})")
    return torch


def cuda_device_info(index: int = 0) -> tuple[str, tuple[int, int]]:
    """(device name, (major, minor) compute capability) of CUDA device `index`."""
    torch = require_torch_cuda()
    if index >= torch.cuda.device_count():
        raise RuntimeUnavailable(f"CUDA device {index} does not exist ({torch.cuda.device_count()} visible)")
    return torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index))  # type: ignore[return-value]


def torch_dtype(np_dtype: np.dtype) -> Any:
    """The torch dtype with the same memory layout as a numpy dtype (for TensorRT I/O buffers)."""
    torch = require_torch_cuda()
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype

"""One interface for running an exported encoder, whatever executes it.

Implementations: `onnxruntime` (CPU/CUDA/TensorRT execution providers), `tensorrt` (native engines) and
`torch` (reference). Models call `run({name: array}) -> {name: array}` and never care which one they
got; `describe()` says what really executes (e.g. the execution provider ONNX Runtime actually chose,
which can silently differ from the one requested).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """This runtime cannot run here (library missing, no GPU, ...). The message says why."""


class ModelFileError(RuntimeError):
    """A model file is missing or damaged; the message names the file and the command that fixes it."""


@dataclass(slots=True)
class RuntimeInfo:
    name: str  # "onnxruntime", "tensorrt", "torch"
    device: str  # "cpu", "cuda:0", ...
    providers: list[str] = field(default_factory=list)  # what really executes, for ORT
    precision: str = "fp32"
    fallback_reasons: list[str] = field(default_factory=list)  # why better runtimes were skipped

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "device": self.device,
            "providers": list(self.providers),
            "precision": self.precision,
            "fallback_reasons": list(self.fallback_reasons),
        }


class Runtime(ABC):
    """A loaded model. Inputs are batched along axis 0; outputs come back as numpy arrays."""

    input_names: list[str]
    output_names: list[str]

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def describe(self) -> RuntimeInfo: ...

    def close(self) -> None:
        return None

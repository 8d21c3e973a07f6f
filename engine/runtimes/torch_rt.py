"""PyTorch eager implementation of `Runtime`: the reference the exported runtimes are checked against.

It wraps an `nn.Module` (usually the same port that was exported to ONNX) so parity tests and the
ORT-vs-eager benchmark call both through one interface. Not used on the fast path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from affectstream.engine.runtimes.base import Runtime, RuntimeInfo, RuntimeUnavailable


class TorchRuntime(Runtime):
    """Run `module(*inputs_in_order)` under `torch.inference_mode()`; outputs named `output_names`."""

    def __init__(
        self,
        module,
        input_names: Sequence[str],
        output_names: Sequence[str],
        *,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        try:
            import torch
        except ImportError as e:
            raise RuntimeUnavailable(f"torch: not installed ({e})") from e
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeUnavailable("torch: CUDA requested but torch.cuda.is_available() is False")
        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        self.device = device
        self.module = module.to(device).eval()
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = []
        for name in self.input_names:
            if name not in inputs:
                raise ValueError(f"missing input '{name}' (expects {self.input_names})")
            args.append(torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device))
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.detach().cpu().numpy() for n, o in zip(self.output_names, outs, strict=True)}

    def describe(self) -> RuntimeInfo:
        return RuntimeInfo(name="torch", device=self.device, providers=[], precision="fp32")

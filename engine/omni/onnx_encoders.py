"""The r1-omni encoders from their exported ONNX graphs, through the project's Runtime chain.

`export/omni_onnx.py` writes omni_vision / omni_projector / omni_audio / omni_gate .onnx; this class loads
them with `runtimes.select.load_runtime` (native TensorRT → ORT TensorRT EP → ORT CUDA → ORT CPU, each
fallback with its reason) and offers the same four calls as OmniModel, so the analyzer can swap
`encoders=` without touching splicing or decoding (which stay in torch: the LLM decodes from embeddings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from affectstream.engine.runtimes.base import ModelFileError, Runtime, RuntimeInfo
from affectstream.engine.runtimes.select import load_runtime

PARTS = ("vision", "projector", "audio", "gate")


class OnnxEncoders:
    def __init__(self, folder: str | Path, prefer: str = "auto", threads: int | None = None) -> None:
        folder = Path(folder).expanduser()
        missing = [p for p in PARTS if not (folder / f"omni_{p}.onnx").is_file()]
        if missing:
            raise ModelFileError(
                f"omni ONNX folder {folder} lacks {', '.join(f'omni_{p}.onnx' for p in missing)}: "
                "run affectstream.export.omni_onnx.export_omni(checkpoint, folder)"
            )
        self.runtimes: dict[str, Runtime] = {
            p: load_runtime(folder / f"omni_{p}.onnx", prefer, threads=threads) for p in PARTS
        }

    def describe(self) -> dict[str, RuntimeInfo]:
        return {p: r.describe() for p, r in self.runtimes.items()}

    def _run(self, part: str, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        arrays = {
            k: v.detach().cpu().numpy().astype(np.int64 if not v.is_floating_point() else np.float32)
            for k, v in feeds.items()
        }
        out = self.runtimes[part].run(arrays)
        return torch.from_numpy(np.ascontiguousarray(next(iter(out.values()))))

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run("vision", {"pixel_values": pixels})

    def project_video(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return self._run("projector", {"features": feats, "gate": probs})

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        return self._run("audio", {"mel": mel})

    def gate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._run("gate", {"input_ids": input_ids, "attention_mask": attention_mask})

    def close(self) -> None:
        for r in self.runtimes.values():
            r.close()

"""Export the r1-omni encoders to ONNX, each checked against PyTorch in ONNX Runtime.

Four graphs, cut where the streaming analyzer caches or batches:
- `omni_vision.onnx`: pixels (N, 3, 224, 224) → SigLIP layer −2 features (N, 196, C) — per frame, so
  the per-frame cache keeps working;
- `omni_projector.onnx`: features (B, 8, 196, C) + gate probs (B, 3) → fused video tokens (B, 392, H);
- `omni_audio.onnx`: log-mel (B, 128, F) → audio tokens (B, F/6, H), F dynamic (3000 faithful, less fast);
- `omni_gate.onnx`: BERT ids + mask (B, L) → branch probs (B, 3).
The LLM is not exported here: it decodes from spliced embeddings (engine/omni/decode.py, engine/omni/llama_embed.py).
Exports use eager attention and the TorchScript exporter (no onnxscript dependency).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from affectstream.engine.omni.loading import load_omni
from affectstream.engine.omni.model import OmniModel
from torch import nn

PARITY_ATOL = 1e-4


class _Vision(nn.Module):
    def __init__(self, m: OmniModel) -> None:
        super().__init__()
        self.m = m

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.m.encode_frames(pixel_values)


class _Projector(nn.Module):
    def __init__(self, m: OmniModel) -> None:
        super().__init__()
        self.m = m

    def forward(self, features: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.m.project_video(features, gate)


class _Audio(nn.Module):
    def __init__(self, m: OmniModel) -> None:
        super().__init__()
        self.m = m

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.m.encode_audio(mel)


class _Gate(nn.Module):
    def __init__(self, m: OmniModel) -> None:
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.m.gate(input_ids, attention_mask)


@dataclass
class Part:
    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]  # export example
    checks: list[dict[str, torch.Tensor]]  # parity inputs (other batch sizes / lengths)
    dynamic: dict[str, dict[int, str]]
    output: str


def _parts(m: OmniModel, seed: int = 0) -> list[Part]:
    cfg = m.cfg
    g = torch.Generator().manual_seed(seed)
    side, c, p, t = cfg.vision.image_size, cfg.mm_hidden_size, cfg.vision.num_patches, cfg.num_frames
    mels = cfg.audio.num_mel_bins

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    def probs(b: int) -> torch.Tensor:
        return torch.softmax(rnd(b, 3), 1)

    def ids(b: int, n: int, pad: int = 0) -> dict[str, torch.Tensor]:
        x = torch.randint(5, cfg.bert.vocab_size, (b, n), generator=g)
        x[:, 0] = 2
        mask = torch.ones(b, n, dtype=torch.long)
        if pad:  # last row right-padded, as a padded BERT batch is
            x[-1, n - pad :], mask[-1, n - pad :] = 0, 0
        return {"input_ids": x, "attention_mask": mask}

    return [
        Part(
            "vision",
            _Vision(m),
            {"pixel_values": rnd(2, 3, side, side)},
            [{"pixel_values": rnd(3, 3, side, side)}],
            {"pixel_values": {0: "n"}, "features": {0: "n"}},
            "features",
        ),
        Part(
            "projector",
            _Projector(m),
            {"features": rnd(1, t, p, c), "gate": probs(1)},
            [{"features": rnd(2, t, p, c), "gate": probs(2)}],
            {"features": {0: "batch"}, "gate": {0: "batch"}, "video_tokens": {0: "batch"}},
            "video_tokens",
        ),
        Part(
            "audio",
            _Audio(m),
            {"mel": rnd(1, mels, cfg.audio_frames_30s)},
            [{"mel": rnd(2, mels, 200)}, {"mel": rnd(1, mels, cfg.audio_frames_30s)}],
            {"mel": {0: "batch", 2: "frames"}, "audio_tokens": {0: "batch", 1: "tokens"}},
            "audio_tokens",
        ),
        Part(
            "gate",
            _Gate(m),
            ids(1, 12),
            [ids(2, 20, pad=7)],
            {
                "input_ids": {0: "batch", 1: "len"},
                "attention_mask": {0: "batch", 1: "len"},
                "gate": {0: "batch"},
            },
            "gate",
        ),
    ]


def onnx_parity(part: Part, path: Path) -> float:
    """Max |ONNX − PyTorch| over the part's check inputs (CPU EP, fp32)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for feed in [part.inputs, *part.checks]:
        with torch.no_grad():
            ref = part.module(*feed.values()).float().numpy()
        got = sess.run(None, {k: v.numpy() for k, v in feed.items()})[0]
        if got.shape != ref.shape:
            raise RuntimeError(f"ONNX {part.name}: shape {got.shape} != PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export_omni(
    checkpoint: str | Path,
    out_dir: str | Path,
    parts: tuple[str, ...] = ("vision", "projector", "audio", "gate"),
    opset: int = 17,
    check: bool = True,
) -> dict[str, tuple[Path, float | None]]:
    """Export the chosen parts; with `check`, refuse (delete) any file whose parity exceeds 1e-4."""
    model, _ = load_omni(checkpoint, device="cpu", dtype="fp32", attn="eager")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, tuple[Path, float | None]] = {}
    for part in _parts(model):
        if part.name not in parts:
            continue
        path = out_dir / f"omni_{part.name}.onnx"
        tmp = path.with_suffix(".onnx.tmp")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on shape checks that are constant per export
            torch.onnx.export(
                part.module.eval(),
                tuple(part.inputs.values()),
                str(tmp),
                input_names=list(part.inputs),
                output_names=[part.output],
                dynamic_axes=part.dynamic,
                opset_version=opset,
                dynamo=False,
            )
        diff = onnx_parity(part, tmp) if check else None
        if diff is not None and diff > PARITY_ATOL:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(
                f"ONNX export of omni {part.name} differs from PyTorch by {diff:.2e} (> {PARITY_ATOL})"
            )
        tmp.replace(path)
        done[part.name] = (path, diff)
    return done

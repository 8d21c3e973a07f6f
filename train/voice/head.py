"""The trainable head on Whisper encoder states, and its ONNX export (torch is needed only here).

Why this shape: emotion shows in *how* states move over an utterance (effort, tempo, pitch excursions),
which plain mean+std pooling partly loses. So the head pools the standardised states three ways —
mean, standard deviation, and `heads` learned attention distributions (attentive statistics pooling:
a weighted mean and weighted std per head, with one linear scorer per head, cheap enough for the fast
path) — and classifies the pooled vector with a small MLP. `attention_heads=0` gives the plain
mean+std baseline. Standardisation constants are buffers, so the exported graph takes raw states.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(slots=True)
class HeadConfig:
    dim: int = 512
    attention_heads: int = 2
    hidden: int = 256  # 0: a linear classifier on the pooled vector
    dropout: float = 0.3
    input_dropout: float = 0.1
    n_classes: int = 7

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_head(cfg: HeadConfig, mu: np.ndarray, sd: np.ndarray) -> Any:
    """A torch module: (frames (B,T,D), mask (B,T)) → logits (B, n_classes)."""
    import torch
    from torch import nn

    class VoiceHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
            self.register_buffer("inv_sd", torch.as_tensor(1.0 / np.maximum(sd, 1e-3), dtype=torch.float32))
            self.heads = cfg.attention_heads
            self.scorer = nn.Linear(cfg.dim, cfg.attention_heads) if cfg.attention_heads else None
            pooled = cfg.dim * 2 * (1 + cfg.attention_heads)
            self.in_drop = nn.Dropout(cfg.input_dropout)
            if cfg.hidden:
                self.mlp = nn.Sequential(
                    nn.Dropout(cfg.dropout),
                    nn.Linear(pooled, cfg.hidden),
                    nn.GELU(),
                    nn.Dropout(cfg.dropout),
                    nn.Linear(cfg.hidden, cfg.n_classes),
                )
            else:
                self.mlp = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(pooled, cfg.n_classes))

        def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            x = (frames - self.mu) * self.inv_sd
            x = self.in_drop(x)
            m = mask.unsqueeze(-1)
            n = m.sum(1).clamp(min=1.0)
            mean = (x * m).sum(1) / n
            var = (((x - mean.unsqueeze(1)) ** 2) * m).sum(1) / n
            parts = [mean, torch.sqrt(var + 1e-5)]
            if self.scorer is not None:
                a = self.scorer(x)  # (B, T, H)
                a = a.masked_fill(m == 0, -1e4)
                w = torch.softmax(a, dim=1)  # over time
                for h in range(self.heads):
                    wh = w[:, :, h : h + 1]
                    am = (wh * x).sum(1)
                    av = (wh * (x - am.unsqueeze(1)) ** 2).sum(1)
                    parts += [am, torch.sqrt(av + 1e-5)]
            return self.mlp(torch.cat(parts, dim=1))

    return VoiceHead()


def export_onnx(
    model: Any, path: str | Path, temperature: float, metadata: dict[str, str], dim: int = 512
) -> None:
    """Write the head as ONNX: inputs `frames` (B,T,D) and `mask` (B,T), output `probs` = softmax(logits/T)."""
    import onnx
    import torch

    class Calibrated(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.t = float(temperature)

        def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(frames, mask) / self.t, dim=1)

    wrapped = Calibrated().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(2, 100, dim)
    mk = torch.ones(2, 100)
    torch.onnx.export(
        wrapped,
        (x, mk),
        str(path),
        input_names=["frames", "mask"],
        output_names=["probs"],
        dynamic_axes={
            "frames": {0: "batch", 1: "time"},
            "mask": {0: "batch", 1: "time"},
            "probs": {0: "batch"},
        },
        opset_version=17,
        dynamo=False,
    )
    m = onnx.load(str(path))
    for k, v in metadata.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "affectstream.train.voice"
    onnx.save(m, str(path))

"""The trainable head on Whisper encoder states, and its ONNX export (torch is needed only here).

Why this shape: emotion shows in *how* the states move over an utterance (effort, tempo, pitch
excursions), which a plain mean loses. So the head pools each state dimension over time with several
statistics — mean, standard deviation, max, min and the spread of the frame-to-frame change
(statistics pooling) — standardises the pooled vector and classifies it with a small MLP. The pooling
has no parameters, so training pools every window once and fits the MLP on the pooled vectors
(seconds on a shared 2-core CPU, where learning attention over frames measured ~3 min per fit), and
the exported graph runs the same pooling from the raw states, so run time and training agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STATS = ("mean", "std", "max", "min", "dstd")


@dataclass(slots=True)
class HeadConfig:
    dim: int = 512
    stats: list[str] = field(default_factory=lambda: list(STATS))
    hidden: int = 256  # 0: a linear classifier on the pooled vector
    dropout: float = 0.3
    input_dropout: float = 0.1
    n_classes: int = 7

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def pooled_dim(self) -> int:
        return self.dim * len(self.stats)


def pool(frames: Any, mask: Any, stats: list[str]) -> Any:
    """(B,T,D) states + (B,T) mask → (B, D·len(stats)) statistics over the real frames (torch)."""
    import torch

    m = mask.unsqueeze(-1)
    n = m.sum(1).clamp(min=1.0)
    mean = (frames * m).sum(1) / n
    out = []
    for s in stats:
        if s == "mean":
            out.append(mean)
        elif s == "std":
            out.append(torch.sqrt((((frames - mean.unsqueeze(1)) ** 2) * m).sum(1) / n + 1e-5))
        elif s == "max":
            out.append(frames.masked_fill(m == 0, -1e4).max(1).values)
        elif s == "min":
            out.append(frames.masked_fill(m == 0, 1e4).min(1).values)
        elif s == "dstd":
            d = frames[:, 1:] - frames[:, :-1]
            dm = m[:, 1:] * m[:, :-1]
            dn = dm.sum(1).clamp(min=1.0)
            dmean = (d * dm).sum(1) / dn
            out.append(torch.sqrt((((d - dmean.unsqueeze(1)) ** 2) * dm).sum(1) / dn + 1e-5))
        else:
            raise ValueError(f"unknown pooling statistic {s!r} (known: {', '.join(STATS)})")
    return torch.cat(out, dim=1)


def pooled(x: np.ndarray, mask: np.ndarray, stats: list[str], chunk: int = 256) -> np.ndarray:
    """Pool numpy arrays in chunks (training: every window once)."""
    import torch

    out = []
    with torch.no_grad():
        for a in range(0, len(x), chunk):
            xb = torch.as_tensor(np.asarray(x[a : a + chunk], np.float32))
            out.append(pool(xb, torch.as_tensor(mask[a : a + chunk]), stats).numpy())
    return np.concatenate(out).astype(np.float32)


def build_mlp(cfg: HeadConfig, mu: np.ndarray, sd: np.ndarray) -> Any:
    """Torch module: pooled vector (B, P) → logits (B, n_classes), standardisation baked in."""
    import torch
    from torch import nn

    class Mlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
            self.register_buffer("inv_sd", torch.as_tensor(1.0 / np.maximum(sd, 1e-3), dtype=torch.float32))
            layers: list[nn.Module] = [nn.Dropout(cfg.input_dropout)]
            if cfg.hidden:
                layers += [
                    nn.Linear(cfg.pooled_dim, cfg.hidden),
                    nn.GELU(),
                    nn.Dropout(cfg.dropout),
                    nn.Linear(cfg.hidden, cfg.n_classes),
                ]
            else:
                layers += [nn.Dropout(cfg.dropout), nn.Linear(cfg.pooled_dim, cfg.n_classes)]
            self.net = nn.Sequential(*layers)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.net((v - self.mu) * self.inv_sd)

    return Mlp()


def export_onnx(
    mlp: Any, cfg: HeadConfig, path: str | Path, temperature: float, metadata: dict[str, str]
) -> None:
    """Write pooling + MLP as ONNX: inputs `frames` (B,T,D) and `mask` (B,T), output
    `probs` = softmax(logits / temperature)."""
    import onnx
    import torch

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = mlp
            self.t = float(temperature)

        def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.mlp(pool(frames, mask, list(cfg.stats))) / self.t, dim=1)

    head = Head().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        head,
        (torch.zeros(2, 100, cfg.dim), torch.ones(2, 100)),
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

"""The `all_in_one_small` visual projector (docs/r1omni.md §1.4), with the checkpoint's parameter names.

Three branches read the same SigLIP features: "video" and "body" (RegStage → Conv3d temporal sampler →
RegStage → readout MLP) and "face" (per-patch MLP → 2x2 bilinear pooling). The BERT gate mixes them.
The RegStage/Bottleneck blocks are written here with timm's attribute names (`b1.conv1.conv`,
`.conv1.bn`, `.se.fc1`, `.downsample`...) so the published state dict loads without a timm dependency.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from affectstream.engine.omni.config import OmniConfig
from torch import nn


class LayerNormAct2d(nn.LayerNorm):
    """timm LayerNormAct2d: LayerNorm over channels of an NCHW map, then an optional activation.
    Named `bn` in the checkpoint because timm keeps BatchNorm-era attribute names."""

    def __init__(self, channels: int, apply_act: bool = True, eps: float = 1e-5) -> None:
        super().__init__(channels, eps=eps)
        self.act = nn.SiLU() if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return self.act(x.permute(0, 3, 1, 2))


class ConvNormAct(nn.Module):
    """timm ConvNormAct: bias-free conv (`.conv`) + LayerNormAct2d (`.bn`)."""

    def __init__(self, cin: int, cout: int, kernel: int, groups: int = 1, apply_act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.bn = LayerNormAct2d(cout, apply_act=apply_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SEModule(nn.Module):
    """timm SEModule (squeeze-excite) with SiLU inside and a sigmoid gate."""

    def __init__(self, channels: int, rd_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class Bottleneck(nn.Module):
    """timm RegNet Bottleneck, bottle_ratio 1, group_size 1 (depthwise 3x3), SE rd = round(ratio*in)."""

    def __init__(self, cin: int, cout: int, se_ratio: float) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 1)
        self.conv2 = ConvNormAct(cout, cout, 3, groups=cout)
        self.se = SEModule(cout, round(cin * se_ratio))
        self.conv3 = ConvNormAct(cout, cout, 1, apply_act=False)
        # timm's create_shortcut: conv1x1+norm when the width changes, else identity
        self.downsample = ConvNormAct(cin, cout, 1, apply_act=False) if cin != cout else nn.Identity()
        self.act3 = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act3(x + self.downsample(shortcut))


class RegStage(nn.Module):
    """timm RegStage: blocks named b1..bN, the first changes the width."""

    def __init__(self, depth: int, cin: int, cout: int, se_ratio: float) -> None:
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", Bottleneck(cin if i == 0 else cout, cout, se_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.children():
            x = block(x)
        return x


def mlp2x_gelu(cin: int, cout: int) -> nn.Sequential:
    """Linear → GELU → Linear; keys `.0` and `.2` as in the checkpoint."""
    return nn.Sequential(nn.Linear(cin, cout), nn.GELU(), nn.Linear(cout, cout))


class AllInOneSmall(nn.Module):
    """Visual projector: (B, T, P, C_vis) SigLIP features → three (B, T·P/4, C_llm) branch outputs."""

    branches = ("video", "body", "face")

    def __init__(self, cfg: OmniConfig) -> None:
        super().__init__()
        cin, cout, d, se = cfg.mm_hidden_size, cfg.hidden_size, cfg.regstage_depth, cfg.se_ratio
        for name in ("video", "body"):
            self.add_module(f"s1_{name}", RegStage(d, cin, cout, se))
            sampler = nn.Sequential(
                nn.Conv3d(cout, cout, (2, 2, 2), stride=(1, 2, 2), padding=(1, 0, 0)), nn.SiLU()
            )
            self.add_module(f"sampler_{name}", sampler)
            self.add_module(f"s2_{name}", RegStage(d, cout, cout, se))
            self.add_module(f"readout_{name}", mlp2x_gelu(cout, cout))
        self.mlp_2xgelu_face = mlp2x_gelu(cin, cout)

    def _spatiotemporal(self, name: str, x: torch.Tensor) -> torch.Tensor:
        b, t, p, c = x.shape
        side = math.isqrt(p)
        if side * side != p:
            raise ValueError(f"projector needs a square patch grid, got {p} patches per frame")
        x = x.reshape(b * t, side, side, c).permute(0, 3, 1, 2)  # (B·T, C, h, w)
        x = getattr(self, f"s1_{name}")(x)
        c2 = x.shape[1]
        x = x.reshape(b, t, c2, side, side).permute(0, 2, 1, 3, 4)  # (B, C, T, h, w)
        x = getattr(self, f"sampler_{name}")(x)[:, :, :t]  # drop the extra temporal slice (padding 1)
        h2, w2 = x.shape[-2:]
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c2, h2, w2)
        x = getattr(self, f"s2_{name}")(x)
        x = x.reshape(b, t, c2, h2, w2).permute(0, 1, 3, 4, 2).reshape(b, t * h2 * w2, c2)  # (t,h,w) order
        return getattr(self, f"readout_{name}")(x)

    def _face(self, x: torch.Tensor) -> torch.Tensor:
        b, t, p, _ = x.shape
        side = math.isqrt(p)
        y = self.mlp_2xgelu_face(x)  # per patch
        c2 = y.shape[-1]
        y = y.reshape(b * t, side, side, c2).permute(0, 3, 1, 2)
        half = -(-side // 2)
        y = F.interpolate(y, size=(half, half), mode="bilinear", align_corners=False)
        return y.permute(0, 2, 3, 1).reshape(b, t * half * half, c2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats (B, T, P, C_vis) → stacked branches (3, B, N, C_llm) in (video, body, face) order."""
        return torch.stack(
            [self._spatiotemporal("video", feats), self._spatiotemporal("body", feats), self._face(feats)]
        )


def fuse(branches: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum: branches (3, B, N, C), probs (B, 3) → (B, N, C)."""
    return torch.einsum("kbnc,bk->bnc", branches, probs.to(branches.dtype))

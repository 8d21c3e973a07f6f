"""SigLIP-base vision tower: frames (N, 3, 224, 224) → patch features (N, 196, 768) from layer −2.

The reference runs the whole SigLIP model (12 layers, post-norm, MAP head) and keeps only
`hidden_states[-2]`, the output of encoder layer 11 without the post-layernorm (docs/r1omni.md §1.3). We
build only the layers that feed that output, so the last layer, post_layernorm and head are
"known-unused" checkpoint keys (loading.py accounts for them) and never cost compute.
Key layout: `vision_tower.vision_model.{embeddings,encoder.layers.N}` under `model.vision_tower`.
"""

from __future__ import annotations

import torch
from affectstream.engine.omni.config import OmniConfig
from torch import nn
from transformers import SiglipVisionConfig
from transformers.models.siglip.modeling_siglip import SiglipEncoder, SiglipVisionEmbeddings


def siglip_config(cfg: OmniConfig, layers: int | None = None, attn: str = "sdpa") -> SiglipVisionConfig:
    v = cfg.vision
    return SiglipVisionConfig(
        hidden_size=v.hidden_size,
        intermediate_size=v.intermediate_size,
        num_hidden_layers=v.num_hidden_layers if layers is None else layers,
        num_attention_heads=v.num_attention_heads,
        image_size=v.image_size,
        patch_size=v.patch_size,
        layer_norm_eps=v.layer_norm_eps,
        num_channels=v.num_channels,
        attn_implementation=attn,
    )


def used_layers(cfg: OmniConfig) -> int:
    """Encoder layers that feed hidden_states[select_layer] (11 of 12 for select_layer −2)."""
    return cfg.vision.num_hidden_layers + cfg.mm_vision_select_layer + 1


class _SiglipVisionModel(nn.Module):
    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.embeddings = SiglipVisionEmbeddings(config)
        self.encoder = SiglipEncoder(config)


class _Holder(nn.Module):
    """Reproduces the `.vision_tower.vision_model` nesting of the reference's SiglipVisionTower."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.vision_model = _SiglipVisionModel(config)


class VisionTower(nn.Module):
    def __init__(self, cfg: OmniConfig, attn: str = "sdpa") -> None:
        super().__init__()
        self.vision_tower = _Holder(siglip_config(cfg, used_layers(cfg), attn))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised pixels → (N, P, C) features of layer `mm_vision_select_layer`."""
        vm = self.vision_tower.vision_model
        h = vm.embeddings(pixel_values.to(vm.embeddings.patch_embedding.weight.dtype))
        return vm.encoder(inputs_embeds=h).last_hidden_state

"""Whisper-large-v3 encoder + avg-pool 3 + audio projector (docs/r1omni.md §1.6).

Two modes, same weights:
- faithful: the reference input, log-mel of the audio padded to 30 s (128 x 3000) → 1500 positions →
  500 tokens, whatever the real length (2.3 TFLOPs per window on the full model);
- fast: only the window's own audio (e.g. 2 s → 200 mel frames → 100 positions → 33 tokens), using the
  first n positional embeddings. Not what the model was trained on, but ~15x less encoder compute.
HF's WhisperEncoder.forward refuses inputs shorter than 3000 frames, so the forward is written here
over its submodules (conv1, conv2, embed_positions, layers, layer_norm) — identical math at 3000.
Key layout: `audio_tower.encoder.*` under `model.audio_tower` (+ unused `projector`/`classifier`).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from affectstream.engine.omni.config import OmniConfig
from affectstream.engine.omni.projector import mlp2x_gelu
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder


def whisper_config(cfg: OmniConfig, attn: str = "sdpa") -> WhisperConfig:
    a = cfg.audio
    return WhisperConfig(
        d_model=a.d_model,
        encoder_layers=a.encoder_layers,
        encoder_attention_heads=a.encoder_attention_heads,
        encoder_ffn_dim=a.encoder_ffn_dim,
        decoder_layers=1,
        decoder_attention_heads=a.encoder_attention_heads,
        decoder_ffn_dim=a.encoder_ffn_dim,
        num_mel_bins=a.num_mel_bins,
        max_source_positions=a.max_source_positions,
        classifier_proj_size=a.classifier_proj_size,
        num_labels=a.num_labels,
        attn_implementation=attn,
    )


class _Holder(nn.Module):
    """Reproduces `.audio_tower.encoder` of the reference's WhisperForAudioClassification."""

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__()
        self.encoder = WhisperEncoder(config)


class AudioTower(nn.Module):
    def __init__(self, cfg: OmniConfig, attn: str = "sdpa") -> None:
        super().__init__()
        self.audio_tower = _Holder(whisper_config(cfg, attn))
        # transformers 4.x layers take a positional layer_head_mask and return a tuple; 5.x do neither
        sig = inspect.signature(type(self.audio_tower.encoder.layers[0]).forward)
        self._head_mask_arg = "layer_head_mask" in sig.parameters

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, F) with F even and ≤ 3000 → encoder states (B, F/2, d_model)."""
        enc = self.audio_tower.encoder
        n_pos = enc.embed_positions.weight.shape[0]
        if mel.shape[-1] % 2 or mel.shape[-1] > 2 * n_pos:
            raise ValueError(
                f"audio features must have an even frame count ≤ {2 * n_pos}, got {mel.shape[-1]}"
            )
        x = mel.to(enc.conv1.weight.dtype)
        x = F.gelu(enc.conv1(x))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        h = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers:
            out = layer(h, None, None) if self._head_mask_arg else layer(h, None)
            h = out[0] if isinstance(out, tuple) else out
        return enc.layer_norm(h)


def pool_audio(states: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """avg_pool1d(k=3, s=3) over time: (B, F, C) → (B, F//3, C), as `encode_audios` does."""
    return F.avg_pool1d(states.transpose(1, 2), kernel, kernel).transpose(1, 2)


def build_audio_projector(cfg: OmniConfig) -> nn.Sequential:
    """`audio_projector` (mlp2x_gelu): Linear(1280, 896) → GELU → Linear(896, 896)."""
    return mlp2x_gelu(cfg.audio_hidden_size, cfg.hidden_size)

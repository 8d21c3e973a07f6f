"""HumanOmniQwen2ForCausalLM-compatible model: Qwen2 LLM + towers + projectors + embedding splicing.

State-dict layout equals the published checkpoints (docs/r1omni.md §2.3): the Qwen2 decoder is `model.*`,
the multimodal parts are submodules of `model` (`model.mm_projector`, `model.bert_model`,
`model.bert_gate`, `model.vision_tower.vision_tower.vision_model`, `model.audio_tower.audio_tower`,
`model.audio_projector`) and `lm_head` is tied to `model.embed_tokens`.
The LLM itself is transformers' Qwen2ForCausalLM; this class only owns the parts around it and the
splicing of the 392 fused video and 500 (or fewer, fast mode) audio embeddings at −201/−202.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from affectstream.engine.omni.audio import AudioTower, build_audio_projector, pool_audio
from affectstream.engine.omni.config import AUDIO_TOKEN_INDEX, VIDEO_TOKEN_INDEX, OmniConfig
from affectstream.engine.omni.gate import build_bert, build_gate, gate_probs
from affectstream.engine.omni.projector import AllInOneSmall, fuse
from affectstream.engine.omni.vision import VisionTower
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM


def qwen2_config(cfg: OmniConfig, attn: str = "sdpa") -> Qwen2Config:
    return Qwen2Config(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        vocab_size=cfg.vocab_size,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        use_sliding_window=False,
        attn_implementation=attn,
    )


@dataclass
class Spliced:
    """One spliced prompt: (L, H) embeddings and where each modality's block sits."""

    embeds: torch.Tensor
    spans: dict[str, tuple[int, int]]  # modality → (start, length)


class OmniModel(nn.Module):
    def __init__(self, cfg: OmniConfig, attn: str = "sdpa") -> None:
        super().__init__()
        self.cfg = cfg
        llm = Qwen2ForCausalLM(qwen2_config(cfg, attn))
        self.model = llm.model
        self.lm_head = llm.lm_head
        object.__setattr__(self, "llm", llm)  # shares the modules above; not a second registration
        m = self.model
        m.vision_tower = VisionTower(cfg, attn)
        m.mm_projector = AllInOneSmall(cfg)
        m.bert_model = build_bert(cfg, attn)
        m.bert_gate = build_gate(cfg)
        m.audio_tower = AudioTower(cfg, attn)
        m.audio_projector = build_audio_projector(cfg)
        self.tie()

    def tie(self) -> None:
        """Re-point lm_head at the embeddings (after assign-loading replaced the tensors)."""
        if self.cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    # ---- encoders -------------------------------------------------------------------------------
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, 224, 224) → (N, 196, C_vis): per-frame, so it can be cached per frame."""
        return self.model.vision_tower(pixels.to(self.device, self.dtype))

    def gate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return gate_probs(
            self.model.bert_model,
            self.model.bert_gate,
            input_ids.to(self.device),
            attention_mask.to(self.device),
        )

    def project_video(self, feats: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """(B, T, P, C_vis) frame features + (B, 3) gate → (B, T·P/4, H) fused video tokens."""
        return fuse(self.model.mm_projector(feats.to(self.dtype)), probs)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, F) log-mel → (B, F/6, H) audio tokens (500 for the padded 30 s input)."""
        states = self.model.audio_tower(mel.to(self.device, self.dtype))
        return self.model.audio_projector(pool_audio(states, self.cfg.audio_pool))

    # ---- splicing -------------------------------------------------------------------------------
    def splice(self, ids: list[int], video: torch.Tensor | None, audio: torch.Tensor | None) -> Spliced:
        """Replace −201 by `video` (Nv, H) and −202 by `audio` (Na, H); text goes through embed_tokens."""
        embed = self.model.embed_tokens
        pieces: list[torch.Tensor] = []
        spans: dict[str, tuple[int, int]] = {}
        text: list[int] = []
        pos = 0

        def flush() -> None:
            nonlocal pos
            if text:
                pieces.append(embed(torch.tensor(text, device=self.device)))
                pos += len(text)
                text.clear()

        for tok in ids:
            if tok in (VIDEO_TOKEN_INDEX, AUDIO_TOKEN_INDEX):
                name, feats = ("video", video) if tok == VIDEO_TOKEN_INDEX else ("audio", audio)
                if feats is None:
                    raise ValueError(f"prompt has a <{name}> placeholder but no {name} features were given")
                if name in spans:
                    raise ValueError(f"prompt has more than one <{name}> placeholder")
                flush()
                pieces.append(feats.to(embed.weight.device, embed.weight.dtype))
                spans[name] = (pos, feats.shape[0])
                pos += feats.shape[0]
            else:
                text.append(tok)
        flush()
        for name, feats in (("video", video), ("audio", audio)):
            if feats is not None and name not in spans:
                raise ValueError(f"{name} features given but the prompt has no <{name}> placeholder")
        return Spliced(torch.cat(pieces, 0), spans)

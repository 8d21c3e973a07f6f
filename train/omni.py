"""GRPO on the r1-omni model class (engine/omni): R1-Omni's trainable set and spliced-embedding prompts.

Why a separate module: the omni prompt is not token ids but video/audio features spliced into the
text embeddings (docs/r1omni.md §1.7), and in R1-Omni's GRPO the projectors, the BERT gate and BERT itself
train along with the LLM while the SigLIP and Whisper towers stay frozen (§4.8). The prompt is
therefore rebuilt inside every pass (a callable), so the loss reaches the projectors and the gate.
Defaults are R1-Omni's: G = 8, β = 0.04, lr 1e-6, temperature 1, top-k 50, max completion 512.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from affectstream.train.grpo import GRPOConfig, Policy
from torch import Tensor, nn

FROZEN = ("vision_tower", "audio_tower")  # R1-Omni: requires_grad_(False) in each tower's load_model


def omni_grpo_config(**overrides: Any) -> GRPOConfig:
    """R1-Omni's GRPO hyperparameters (docs/r1omni.md §4.7), overridable."""
    base = dict(
        num_generations=8, beta=0.04, learning_rate=1e-6, temperature=1.0, top_k=50, max_completion_length=512
    )
    return GRPOConfig(**{**base, **overrides})


def set_trainable(om: nn.Module, frozen: Sequence[str] = FROZEN) -> dict[str, int]:
    """Freeze the towers, train everything else; returns trainable/frozen parameter counts."""
    om.requires_grad_(True)
    for name in frozen:
        getattr(om.model, name).requires_grad_(False)
    n_train = sum(p.numel() for p in om.parameters() if p.requires_grad)
    n_frozen = sum(p.numel() for p in om.parameters() if not p.requires_grad)
    return {"trainable": n_train, "frozen": n_frozen}


def frozen_reference(om: nn.Module) -> nn.Module:
    """R1-Omni's reference: a frozen copy of the starting checkpoint, never updated."""
    ref = copy.deepcopy(om)
    ref.requires_grad_(False)
    return ref.eval()


@dataclass
class OmniPrompt:
    """One window's prompt: token ids with −201/−202 placeholders, frame pixels, audio mel, gate text.

    Called with an LLM (the policy's or the reference's), it rebuilds the spliced embeddings with
    THAT model's projectors and gate; tower features carry no gradient (frozen towers).
    """

    owners: Mapping[int, nn.Module]  # id(llm) → the OmniModel it belongs to
    ids: list[int]
    pixels: Tensor  # (T, 3, S, S)
    mel: Tensor  # (1, n_mels, frames)
    gate_ids: Tensor  # (1, n) BERT ids
    gate_mask: Tensor

    def __call__(self, llm: nn.Module) -> Mapping[str, Tensor]:
        om = self.owners[id(llm)]
        with torch.no_grad():
            frames = om.encode_frames(self.pixels)  # (T, P, C) frozen tower
            states = om.model.audio_tower(self.mel.to(om.device, om.dtype))  # frozen tower
        probs = om.gate(self.gate_ids, self.gate_mask)  # (1, 3) trainable gate
        video = om.project_video(frames[None], probs)[0]  # (Nv, H) trainable projector
        from affectstream.engine.omni.audio import pool_audio

        audio = om.model.audio_projector(pool_audio(states, om.cfg.audio_pool))[0]  # (Na, H)
        return {"inputs_embeds": om.splice(self.ids, video, audio).embeds[None]}


def omni_policy(
    om: nn.Module, ref: nn.Module, eos_ids: Sequence[int], pad_id: int
) -> tuple[Policy, dict[int, nn.Module]]:
    """A `Policy` over the omni LLM with the frozen reference; also the llm→model owner map for prompts."""
    owners = {id(om.llm): om, id(ref.llm): ref}
    return Policy(om.llm, eos_ids, pad_id, ref_model=ref.llm), owners

"""The GRPO trainer on the r1-omni model class (tiny random weights, real token geometry).

One step runs with spliced video+audio embeddings, the loss is finite, and only the trainable parts
(LLM, projectors, gate, BERT) change while the SigLIP/Whisper towers stay frozen (docs/r1omni.md §4.8).
"""

from __future__ import annotations

import math

import pytest
import torch

omni_config = pytest.importorskip("affectstream.engine.omni.config")


@pytest.mark.slow
def test_one_grpo_step_on_tiny_omni(tmp_path) -> None:
    from affectstream.engine.omni.config import AUDIO_TOKEN_INDEX, VIDEO_TOKEN_INDEX, tiny
    from affectstream.engine.omni.model import OmniModel
    from affectstream.train.grpo import GRPOExample, GRPOTrainer
    from affectstream.train.omni import (
        OmniPrompt,
        frozen_reference,
        omni_grpo_config,
        omni_policy,
        set_trainable,
    )

    torch.manual_seed(0)
    cfg = tiny(vocab_size=64, bos_token_id=0, eos_token_id=1)
    om = OmniModel(cfg)
    with torch.no_grad():  # random init everywhere (some modules default to zeros/ones)
        for p in om.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    om.tie()
    counts = set_trainable(om)
    assert counts["frozen"] > 0 and counts["trainable"] > 0
    ref = frozen_reference(om)
    policy, owners = omni_policy(om, ref, eos_ids=[1], pad_id=0)
    g = torch.Generator().manual_seed(1)
    prompt = OmniPrompt(
        owners=owners,
        ids=[5, 6, VIDEO_TOKEN_INDEX, 7, AUDIO_TOKEN_INDEX, 8, 9],
        pixels=torch.randn(cfg.num_frames, 3, cfg.vision.image_size, cfg.vision.image_size, generator=g),
        mel=torch.randn(1, cfg.audio.num_mel_bins, cfg.audio.max_source_positions * 2, generator=g),
        gate_ids=torch.tensor([[1, 5, 6, 2]]),
        gate_mask=torch.ones(1, 4, dtype=torch.long),
    )
    inputs = prompt(om.llm)["inputs_embeds"]
    assert inputs.shape[1] == 5 + cfg.video_tokens + cfg.audio_tokens_30s  # 392 + 500 spliced positions

    before = {n: p.detach().clone() for n, p in om.named_parameters()}
    conf = omni_grpo_config(
        num_generations=4,
        max_completion_length=4,
        steps=1,
        output_dir=str(tmp_path),
        save_every=0,
        learning_rate=1e-3,
    )
    assert (conf.beta, conf.temperature, conf.top_k) == (0.04, 1.0, 50)

    # A reward that differs inside the group (its rank), so the advantages are non-zero.
    def reward(comps, sol):
        zeros = [0.0] * len(comps)
        return {"reward": [float(i) for i in range(len(comps))], "accuracy": zeros, "format": zeros}

    trainer = GRPOTrainer(
        policy,
        [GRPOExample(prompt, "happy")],
        lambda ids: "x" * len(ids),
        conf,
        reward_fn=reward,
        progress=False,
    )
    m = trainer.train_step()
    assert math.isfinite(m["loss"]) and math.isfinite(m["kl"])
    changed = {n for n, p in om.named_parameters() if not torch.equal(p.detach(), before[n])}
    for n in changed:
        assert "vision_tower" not in n and "audio_tower" not in n, n
    assert any("mm_projector" in n for n in changed)
    assert any("audio_projector" in n for n in changed)
    assert any("bert_gate" in n for n in changed)
    assert any(".layers." in n and "bert" not in n for n in changed)
    # the reference never moves
    for n, p in ref.named_parameters():
        assert torch.equal(p, before[n]), n

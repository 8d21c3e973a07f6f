"""GRPO math on hand-computed groups, and a real learning signal on a tiny random model."""

from __future__ import annotations

import math

import pytest
import torch
from affectstream.train.grpo import (
    GRPOConfig,
    GRPOExample,
    GRPOTrainer,
    Policy,
    completion_mask,
    group_advantages,
    grpo_loss,
    k3_kl,
)
from affectstream.train.rewards import format_reward
from tiny_lm import tiny_llama


def test_group_advantages_hand_computed() -> None:
    # group [1, 0, 2, 1]: mean 1, unbiased std sqrt(2/3)
    a = group_advantages(torch.tensor([1.0, 0.0, 2.0, 1.0, 2.0, 2.0, 2.0, 2.0]), 4)
    s = math.sqrt(2 / 3)
    exp = [0.0, -1 / (s + 1e-4), 1 / (s + 1e-4), 0.0, 0.0, 0.0, 0.0, 0.0]
    assert a.tolist() == pytest.approx(exp, abs=1e-6)


def test_group_advantages_rejects_ragged() -> None:
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), 4)


def test_k3_kl_values() -> None:
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    ref = torch.tensor([math.log(0.25), math.log(0.2)])
    kl = k3_kl(logp, ref)
    # d = ln(0.25/0.5) = -ln2: e^d - d - 1 = 0.5 + ln2 - 1
    assert kl[0].item() == pytest.approx(0.5 + math.log(2) - 1, abs=1e-6)
    assert kl[1].item() == pytest.approx(0.0, abs=1e-7)


def test_grpo_loss_value_and_gradient() -> None:
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0, -0.5], [-0.3, -0.2, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv = torch.tensor([1.5, -0.5])
    beta = 0.04
    loss, kl = grpo_loss(logp, ref, adv, mask, beta)
    k = lambda lp, r: math.exp(r - lp) - (r - lp) - 1  # noqa: E731
    seq0 = (-(1.5 - beta * k(-1.0, -1.5)) - (1.5 - beta * k(-2.0, -2.0))) / 2
    seq1 = (
        -(-0.5 - beta * k(-0.3, -0.3)) - (-0.5 - beta * k(-0.7, -0.2)) - (-0.5 - beta * k(-9.0, -9.0))
    ) / 3
    assert loss.item() == pytest.approx((seq0 + seq1) / 2, abs=1e-6)
    assert kl.item() == pytest.approx((k(-1.0, -1.5) / 2 + k(-0.7, -0.2) / 3) / 2, abs=1e-6)
    loss.backward()
    # d/dlogp of -(A) term = -A/(n·B); masked token gets no gradient
    g = logp.grad
    assert g[0, 2].item() == 0.0
    d_kl = lambda lp, r: -math.exp(r - lp) + 1  # noqa: E731  d k3 / d logp
    assert g[0, 0].item() == pytest.approx((-1.5 + beta * d_kl(-1.0, -1.5)) / 4, abs=1e-6)
    assert g[1, 1].item() == pytest.approx((0.5 + beta * d_kl(-0.7, -0.2)) / 6, abs=1e-6)


def test_completion_mask_first_eos_inclusive() -> None:
    c = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8], [2, 2, 9, 9]])
    m = completion_mask(c, [2])
    assert m.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


# --------------------------------------------------------------------------- tiny model
# Vocabulary of "chunks": a completion is well formed only as [THINK, ANSWER] (+ EOS).
PIECES = {0: "", 1: "", 2: "<think>ok</think>", 3: "<answer>happy</answer>", 4: "hmm ", 5: "<answer>"}
EOS, PAD = 1, 0


def _decode(ids: list[int]) -> str:
    return "".join(PIECES.get(i, "?") for i in ids)


def _tiny_model(seed: int = 0):
    return tiny_llama(8, seed)


def _format_rate(policy: Policy, examples: list[GRPOExample], n: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    vals = []
    for ex in examples:
        comps = policy.sample(ex.prompt, n, 3, 1.0, None, g)
        mask = completion_mask(comps, [EOS])
        vals += [format_reward(_decode(r[: int(m.sum())].tolist())) for r, m in zip(comps, mask, strict=True)]
    return sum(vals) / len(vals)


def test_grpo_raises_format_reward_on_tiny_model(tmp_path) -> None:
    model = _tiny_model()
    ref = _tiny_model()
    ref.load_state_dict(model.state_dict())
    ref.requires_grad_(False)
    policy = Policy(model, eos_ids=[EOS], pad_id=PAD, ref_model=ref)
    examples = [GRPOExample({"input_ids": torch.tensor([[6, t]])}, "happy") for t in (6, 7)]
    before = _format_rate(policy, examples, 64, seed=1)
    cfg = GRPOConfig(
        num_generations=8, beta=0.04, learning_rate=3e-2, max_completion_length=3, steps=40,
        prompts_per_step=2, top_k=None, seed=0, output_dir=str(tmp_path), save_every=0,
        reward_funcs=("format",),
    )  # fmt: skip
    trainer = GRPOTrainer(policy, examples, _decode, cfg, progress=False)
    hist = trainer.run()
    after = _format_rate(policy, examples, 64, seed=2)
    assert before < 0.2, before
    print(f"format rate before {before:.3f} after {after:.3f}")
    assert after > before + 0.4, (before, after)
    assert sum(h["kl"] for h in hist[-5:]) > 0  # the policy moved away from the frozen reference
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 40
    # only the policy trained; the reference stayed frozen
    assert not torch.equal(model.lm_head.weight, ref.lm_head.weight)


def test_grpo_resume_restores_state(tmp_path) -> None:
    model = _tiny_model(1)
    ref = _tiny_model(1)
    ref.requires_grad_(False)
    examples = [GRPOExample({"input_ids": torch.tensor([[6, 7]])}, "happy")]
    cfg = GRPOConfig(num_generations=4, learning_rate=1e-2, max_completion_length=3, steps=3, top_k=None,
                     output_dir=str(tmp_path), save_every=0)  # fmt: skip
    t1 = GRPOTrainer(Policy(model, [EOS], PAD, ref), examples, _decode, cfg, progress=False)
    t1.run()
    model2 = _tiny_model(2)
    t2 = GRPOTrainer(Policy(model2, [EOS], PAD, ref), examples, _decode, cfg, progress=False)
    assert t2.resume()
    assert t2.step == 3
    assert torch.equal(model2.lm_head.weight, model.lm_head.weight)


def test_shared_prompt_logprobs_match_full_forward() -> None:
    """The KV-cache sharing trick gives the same log-probs as G independent full forwards."""
    model = _tiny_model(3).eval()
    policy = Policy(model, [EOS], PAD, share_prompt=True)
    prompt = torch.tensor([[6, 7, 4]])
    comps = torch.tensor([[2, 3, 1], [4, 5, 2], [3, 3, 3]])
    lp = policy.logprobs({"input_ids": prompt}, comps)
    lp_full = Policy(model, [EOS], PAD, share_prompt=False).logprobs({"input_ids": prompt}, comps)
    assert torch.allclose(lp, lp_full, atol=1e-5)
    full = torch.cat([prompt.expand(3, -1), comps], 1)
    logits = model(input_ids=full).logits[:, prompt.shape[1] - 1 : -1]
    exp = torch.log_softmax(logits, -1).gather(-1, comps[:, :, None]).squeeze(-1)
    assert torch.allclose(lp, exp, atol=1e-5)

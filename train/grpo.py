"""GRPO (docs/r1omni.md §4.5–4.6) as a compact trainer for causal LMs and spliced-embedding models.

Why our own trainer instead of TRL's `GRPOTrainer`: the omni model's prompts are spliced
embeddings, not token ids, and on a 2-core CPU every token counts. This trainer
- samples the G completions from ONE prompt pass whose KV cache is repeated G times
  (`Cache.batch_repeat_interleave`); for the policy/reference log-probs it can do the same
  (`share_prompt=True`, gradients flow into the prompt's keys/values; always used for omni's
  ~900-position spliced prompts) or run G plain prompt+completion forwards, which measured faster
  for SmolLM2's short prompts on 2 CPU cores (bench/train_grpo_shared_prompt.py);
- accepts a prompt either as `input_ids` or `inputs_embeds` (anything the model's forward takes), so
  the same code trains SmolLM2 + LoRA and the r1-omni model class;
- uses the adapter-disabled model as the frozen reference when the policy is a PEFT model (one copy
  of the base weights), or an explicit reference model.

Loss, exactly R1-Omni's (= TRL v0.14): A_i = (r_i − mean) / (std_unbiased + 1e-4) per group;
KL_t = exp(ref_t − logp_t) − (ref_t − logp_t) − 1 (k3); L_t = −(exp(logp_t − sg(logp_t))·A_i − β·KL_t);
loss = mean over sequences of the masked token mean. No clipping, one update per batch (μ = 1).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from affectstream.train.loop import TrainingLoop, linear_lr
from affectstream.train.rewards import score_group
from torch import Tensor, nn

# --------------------------------------------------------------------------- the math


def group_advantages(rewards: Tensor, group_size: int, eps: float = 1e-4) -> Tensor:
    """(r − group mean) / (group std + eps), std unbiased (torch.std), as R1-Omni/TRL v0.14 compute it."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    return ((r - mean) / (std + eps)).view(-1)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(policy ‖ ref): exp(ref − logp) − (ref − logp) − 1 (≥ 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def grpo_loss(
    logp: Tensor, ref_logp: Tensor, advantages: Tensor, mask: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """GRPO loss (per-sequence token mean, then batch mean) and the mean per-sequence KL.

    `logp`, `ref_logp`, `mask`: (B, C); `advantages`: (B,). exp(logp − sg(logp)) is 1 in value with
    gradient ∇logp, which makes this the REINFORCE-with-group-baseline gradient plus β·∇KL.
    """
    mask = mask.to(logp.dtype)
    kl = k3_kl(logp, ref_logp.detach())
    per_token = -(torch.exp(logp - logp.detach()) * advantages[:, None].to(logp.dtype) - beta * kl)
    denom = mask.sum(dim=1).clamp(min=1.0)
    loss = ((per_token * mask).sum(dim=1) / denom).mean()
    mean_kl = ((kl * mask).sum(dim=1) / denom).mean()
    return loss, mean_kl.detach()


def completion_mask(completions: Tensor, eos_ids: Sequence[int]) -> Tensor:
    """1 up to and including the first EOS, 0 after; all ones when no EOS (docs/r1omni.md §4.5)."""
    is_eos = torch.zeros_like(completions, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= completions == e
    c = completions.shape[1]
    first = torch.where(
        is_eos.any(1), is_eos.int().argmax(1), torch.full_like(is_eos[:, 0], c, dtype=torch.long)
    )
    pos = torch.arange(c, device=completions.device)[None, :]
    return (pos <= first[:, None]).long()


# --------------------------------------------------------------------------- the policy wrapper

Prompt = Mapping[
    str, Tensor
]  # {"input_ids": (1, P)} or {"inputs_embeds": (1, P, H)} (+ extra forward kwargs)


class Policy:
    """A causal LM seen as a policy: shared-prompt sampling and completion log-probs.

    `model` is any HF-style causal LM (forward accepts `past_key_values`, `use_cache`, returns
    `.logits` and `.past_key_values`). The reference is `ref_model` if given, else `model` with its
    PEFT adapters disabled (`disable_adapter()`), else (no adapters, no ref) β must be 0.
    """

    def __init__(
        self,
        model: nn.Module,
        eos_ids: Sequence[int],
        pad_id: int,
        ref_model: nn.Module | None = None,
        share_prompt: bool = False,
    ):
        self.model = model
        # Token-id prompts default to G full forwards of prompt+completion: measured faster on 2 CPU
        # cores than one prompt pass + a shared KV cache (bench/train_grpo_shared_prompt.py).
        # Callable/embedding prompts (omni) always share the prompt pass (~900 spliced positions).
        self.share_prompt = share_prompt
        self.ref_model = ref_model
        self.eos_ids = list(eos_ids)
        self.pad_id = int(pad_id)

    def _ref_ctx(self) -> tuple[nn.Module, contextlib.AbstractContextManager[Any]]:
        if self.ref_model is not None:
            return self.ref_model, contextlib.nullcontext()
        if hasattr(self.model, "disable_adapter"):
            return self.model, self.model.disable_adapter()
        raise RuntimeError("no reference: pass ref_model or use a PEFT model (or set beta = 0)")

    @staticmethod
    def _prefill(model: nn.Module, prompt: Prompt) -> tuple[Any, Tensor]:
        inputs = prompt(model) if callable(prompt) else prompt
        # logits_to_keep=1: only the last prompt position's vocabulary head is needed (49k-wide on SmolLM2).
        out = model(**dict(inputs), use_cache=True, logits_to_keep=1)
        return out.past_key_values, out.logits[:, -1, :]

    @torch.no_grad()
    def sample(
        self,
        prompt: Prompt,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = 50,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> Tensor:
        """`n` completions of one prompt, (n, C) token ids, padded with `pad_id` after EOS."""
        was_training = self.model.training
        self.model.eval()
        try:
            cache, last = self._prefill(self.model, prompt)
            cache.batch_repeat_interleave(n)
            logits = last.float().expand(n, -1)
            done = torch.zeros(n, dtype=torch.bool)
            toks: list[Tensor] = []
            for _ in range(max_new_tokens):
                if greedy:
                    nxt = logits.argmax(-1)
                else:
                    z = logits / max(temperature, 1e-6)
                    if top_k:
                        kth = torch.topk(z, min(top_k, z.shape[-1]), dim=-1).values[:, -1:]
                        z = z.masked_fill(z < kth, float("-inf"))
                    nxt = torch.multinomial(torch.softmax(z, -1), 1, generator=generator).squeeze(1)
                nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
                toks.append(nxt)
                for e in self.eos_ids:
                    done |= nxt == e
                if bool(done.all()):
                    break
                out = self.model(input_ids=nxt[:, None], past_key_values=cache, use_cache=True)
                cache, logits = out.past_key_values, out.logits[:, -1, :].float()
            return torch.stack(toks, dim=1)
        finally:
            self.model.train(was_training)

    def _logprobs(self, model: nn.Module, prompt: Prompt, completions: Tensor) -> Tensor:
        n = completions.shape[0]
        if not self.share_prompt and not callable(prompt) and set(prompt) == {"input_ids"}:
            p = prompt["input_ids"]
            ids = torch.cat([p.expand(n, -1), completions], dim=1)
            c = completions.shape[1]
            logits = model(input_ids=ids, logits_to_keep=c + 1).logits[:, :-1]
            return torch.log_softmax(logits.float(), dim=-1).gather(-1, completions[:, :, None]).squeeze(-1)
        cache, last = self._prefill(model, prompt)
        cache.batch_repeat_interleave(n)
        if completions.shape[1] > 1:
            out = model(input_ids=completions[:, :-1], past_key_values=cache, use_cache=True)
            logits = torch.cat([last[:, None, :].expand(n, 1, -1), out.logits], dim=1)
        else:
            logits = last[:, None, :].expand(n, 1, -1)
        logp = torch.log_softmax(logits.float(), dim=-1)
        return logp.gather(-1, completions[:, :, None]).squeeze(-1)

    def logprobs(self, prompt: Prompt, completions: Tensor) -> Tensor:
        """Per-token log p(completion_t | prompt, completion_<t) under the policy, with gradients."""
        return self._logprobs(self.model, prompt, completions)

    @torch.no_grad()
    def ref_logprobs(self, prompt: Prompt, completions: Tensor) -> Tensor:
        """The same under the frozen reference (no gradients)."""
        model, ctx = self._ref_ctx()
        with ctx:
            return self._logprobs(model, prompt, completions)


# --------------------------------------------------------------------------- the trainer


@dataclass
class GRPOConfig:
    """Defaults are R1-Omni's (docs/r1omni.md §4.7); CPU configs override lr, G and lengths."""

    num_generations: int = 8
    beta: float = 0.04
    learning_rate: float = 1e-6
    temperature: float = 1.0
    top_k: int | None = 50
    max_completion_length: int = 512
    max_grad_norm: float = 1.0
    prompts_per_step: int = 1  # R1-Omni: 1 per device × grad-accum 2 × 8 GPUs = 16
    steps: int = 100
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    skip_uniform_groups: bool = False  # CPU speed-up: a group with equal rewards has zero advantage
    save_every: int = 25
    time_budget_s: float | None = None  # stop (and save) when exceeded
    output_dir: str = "runs/grpo"
    reward_funcs: tuple[str, ...] = ("accuracy", "format")


@dataclass
class GRPOExample:
    """A prompt (model inputs, batch 1) and its solution string, e.g. "fear"."""

    prompt: Prompt
    solution: str
    meta: dict[str, Any] = field(default_factory=dict)


# (completions, solution) or, for context rewards such as grounding, (completions, solution, meta)
RewardFn = Callable[..., dict[str, list[float]]]


class GRPOTrainer(TrainingLoop):
    """Step: sample G completions per prompt → rewards → advantages → loss → one AdamW step.

    The run loop (`TrainingLoop`) writes `metrics.jsonl` (one line per step: reward, accuracy, format,
    kl, completion length, loss, lr, seconds) and a resumable `checkpoint.pt` (trainable weights,
    optimizer, step, example order, sampling RNG).
    """

    name = "grpo"

    def __init__(
        self,
        policy: Policy,
        examples: Sequence[GRPOExample],
        decode: Callable[[Sequence[int]], str],
        config: GRPOConfig,
        reward_fn: RewardFn | None = None,
        progress: bool = True,
    ) -> None:
        if not examples:
            raise ValueError("GRPO needs at least one example")
        self.policy = policy
        self.examples = list(examples)
        self.decode = decode
        self.cfg = config
        self.reward_fn = reward_fn or (
            lambda comps, sol, meta=None: score_group(comps, sol, config.reward_funcs, meta)
        )
        self._reward_takes_meta = reward_fn is None
        self.progress = progress
        self.params = [p for p in policy.model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the policy has no trainable parameters")
        self.opt = torch.optim.AdamW(
            self.params,
            lr=config.learning_rate,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=config.weight_decay,
        )
        self.model = policy.model
        self.step = 0
        self.out = Path(config.output_dir)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.order_rng = random.Random(config.seed)
        self._order: list[int] = []

    @property
    def total_steps(self) -> int:
        return self.cfg.steps

    # -- schedule: linear decay after optional warmup (TRL default: linear, no warmup)
    def lr_at(self, step: int) -> float:
        return linear_lr(step, self.cfg.learning_rate, self.cfg.warmup_steps, self.cfg.steps)

    def _next_example(self) -> GRPOExample:
        if not self._order:
            self._order = list(range(len(self.examples)))
            self.order_rng.shuffle(self._order)
        return self.examples[self._order.pop()]

    def train_step(self) -> dict[str, float]:
        """One optimizer step over `prompts_per_step` groups; returns the step's metrics."""
        c = self.cfg
        t0 = time.perf_counter()
        self.policy.model.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {
            "reward": 0.0,
            "reward_std": 0.0,
            "kl": 0.0,
            "loss": 0.0,
            "completion_length": 0.0,
        }
        per_fn: dict[str, float] = {k: 0.0 for k in c.reward_funcs}
        skipped = 0
        for _ in range(c.prompts_per_step):
            ex = self._next_example()
            comps = self.policy.sample(
                ex.prompt, c.num_generations, c.max_completion_length, c.temperature, c.top_k, self.gen
            )
            mask = completion_mask(comps, self.policy.eos_ids)
            texts = [self.decode(row[: int(m.sum())].tolist()) for row, m in zip(comps, mask, strict=True)]
            if self._reward_takes_meta:
                scored = self.reward_fn(texts, ex.solution, ex.meta)
            else:
                scored = self.reward_fn(texts, ex.solution)
            rewards = torch.tensor(scored["reward"], dtype=torch.float32)
            adv = group_advantages(rewards, c.num_generations)
            sums["reward"] += float(rewards.mean())
            sums["reward_std"] += float(rewards.std()) if len(rewards) > 1 else 0.0
            sums["completion_length"] += float(mask.sum(1).float().mean())
            for k in c.reward_funcs:
                per_fn[k] += sum(scored[k]) / len(texts)
            if c.skip_uniform_groups and bool((rewards == rewards[0]).all()):
                skipped += 1
                continue
            ref = self.policy.ref_logprobs(ex.prompt, comps) if c.beta else None
            logp = self.policy.logprobs(ex.prompt, comps)
            loss, kl = grpo_loss(logp, ref if ref is not None else logp.detach(), adv, mask, c.beta)
            (loss / c.prompts_per_step).backward()
            sums["loss"] += float(loss.detach())
            sums["kl"] += float(kl)
        grad_norm = 0.0
        if skipped < c.prompts_per_step:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm))
            self.opt.step()
        self.step += 1
        n = c.prompts_per_step
        used = max(1, n - skipped)
        m = {
            "step": self.step,
            "reward": sums["reward"] / n,
            "reward_std": sums["reward_std"] / n,
            **{f"rewards/{k}": v / n for k, v in per_fn.items()},
            "kl": sums["kl"] / used,
            "loss": sums["loss"] / used,
            "completion_length": sums["completion_length"] / n,
            "grad_norm": grad_norm,
            "lr": self.lr_at(self.step - 1),
            "skipped_groups": skipped,
            "seconds": time.perf_counter() - t0,
        }
        return m

    # -- checkpoints
    def extra_state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "order_rng": self.order_rng.getstate(), "order": self._order}

    def load_extra_state(self, ck: dict[str, Any]) -> None:
        self.gen.set_state(ck["gen"])
        self.order_rng.setstate(ck["order_rng"])
        self._order = list(ck["order"])

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {
            "r": f"{metrics['reward']:.2f}",
            "fmt": f"{metrics.get('rewards/format', math.nan):.2f}",
            "kl": f"{metrics['kl']:.3f}",
        }

"""Cold-start SFT: teach the format and how to read the cue block before RL (docs/r1omni.md §4.2).

Plain next-token cross-entropy on the assistant tokens only (prompt tokens are ignored), AdamW,
linear warmup/decay, LoRA. Batches are left-padded so every completion ends at the last position:
`logits_to_keep` then computes the 49k-way vocabulary head only where there are targets, the
largest single saving on CPU. Metrics go to JSONL; `checkpoint.pt` makes the run resumable.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from affectstream.train.loop import TrainingLoop, linear_lr


@dataclass
class SFTConfig:
    learning_rate: float = 3e-4
    batch_size: int = 8
    epochs: float = 1.0
    warmup_steps: int = 5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_every: int = 20
    time_budget_s: float | None = None
    output_dir: str = "runs/sft"


@dataclass
class SFTExample:
    prompt_ids: list[int]
    target_ids: list[int]  # completion tokens including the closing EOS


def collate(batch: Sequence[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompt+target; labels −100 except on target tokens; `keep` = logits positions needed."""
    seqs = [e.prompt_ids + e.target_ids for e in batch]
    n = max(len(s) for s in seqs)
    keep = max(len(e.target_ids) for e in batch) + 1
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    att = torch.zeros((len(batch), n), dtype=torch.long)
    labels = torch.full((len(batch), n), -100, dtype=torch.long)
    for i, (e, s) in enumerate(zip(batch, seqs, strict=True)):
        ids[i, n - len(s) :] = torch.tensor(s)
        att[i, n - len(s) :] = 1
        labels[i, n - len(e.target_ids) :] = torch.tensor(e.target_ids)
    return {"input_ids": ids, "attention_mask": att, "labels": labels, "keep": torch.tensor(keep)}


def sft_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token cross-entropy on target positions, computing logits only for the last `keep` positions."""
    keep = int(batch["keep"])
    pos = torch.cumsum(batch["attention_mask"], 1) - 1  # left padding: positions start at 0 per row
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=pos.clamp(min=0),
        logits_to_keep=keep,
    )
    logits = out.logits[:, :-1].float()
    labels = batch["labels"][:, -keep + 1 :]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
    )


class SFTTrainer(TrainingLoop):
    """Cross-entropy steps over shuffled examples; saving, resuming and the run loop are `TrainingLoop`'s."""

    name = "sft"

    def __init__(
        self,
        model: Any,
        examples: Sequence[SFTExample],
        pad_id: int,
        config: SFTConfig,
        progress: bool = True,
    ) -> None:
        if not examples:
            raise ValueError("SFT needs at least one example")
        self.model = model
        self.examples = list(examples)
        self.pad_id = pad_id
        self.cfg = config
        self.progress = progress
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.opt = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.rng = random.Random(config.seed)
        self._total = max(1, int(len(self.examples) * config.epochs) // config.batch_size)
        self.step = 0
        self._order: list[int] = []
        self.out = Path(config.output_dir)

    @property
    def total_steps(self) -> int:
        return self._total

    def lr_at(self, step: int) -> float:
        return linear_lr(step, self.cfg.learning_rate, self.cfg.warmup_steps, self.total_steps)

    def _batch(self) -> list[SFTExample]:
        out = []
        for _ in range(self.cfg.batch_size):
            if not self._order:
                self._order = list(range(len(self.examples)))
                self.rng.shuffle(self._order)
            out.append(self.examples[self._order.pop()])
        return out

    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        self.model.train()
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step)
        batch = collate(self._batch(), self.pad_id)
        loss = sft_loss(self.model, batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm))
        self.opt.step()
        self.step += 1
        return {
            "step": self.step,
            "loss": float(loss.detach()),
            "grad_norm": gn,
            "lr": self.lr_at(self.step - 1),
            "tokens": int(batch["attention_mask"].sum()),
            "seconds": time.perf_counter() - t0,
        }

    def extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "order": self._order}

    def load_extra_state(self, ck: dict[str, Any]) -> None:
        self.rng.setstate(ck["rng"])
        self._order = list(ck["order"])

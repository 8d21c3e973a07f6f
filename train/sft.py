"""Cold-start SFT: teach the format and how to read the cue block before RL (docs/r1omni.md §4.2).

Plain next-token cross-entropy on the assistant tokens only (prompt tokens are ignored), AdamW,
linear warmup/decay, LoRA. Batches are left-padded so every completion ends at the last position:
`logits_to_keep` then computes the 49k-way vocabulary head only where there are targets, the
largest single saving on CPU. Metrics go to JSONL; `checkpoint.pt` makes the run resumable.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from affectstream.train.grpo import _progress, load_checkpoint, trainable_state


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


class SFTTrainer:
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
        bs = config.batch_size
        self.total_steps = max(1, int(len(self.examples) * config.epochs) // bs)
        self.step = 0
        self._order: list[int] = []
        self.out = Path(config.output_dir)

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup_steps:
            return c.learning_rate * (step + 1) / c.warmup_steps
        span = max(1, self.total_steps - c.warmup_steps)
        return c.learning_rate * max(0.0, 1.0 - (step - c.warmup_steps) / span)

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

    def save(self, name: str = "checkpoint.pt") -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        p = self.out / name
        tmp = p.with_suffix(".tmp")
        torch.save(
            {
                "step": self.step,
                "trainable": trainable_state(self.model),
                "optimizer": self.opt.state_dict(),
                "rng": self.rng.getstate(),
                "order": self._order,
                "config": asdict(self.cfg),
            },
            tmp,
        )
        tmp.replace(p)
        return p

    def resume(self, path: str | Path | None = None) -> bool:
        p = Path(path) if path else self.out / "checkpoint.pt"
        if not p.exists():
            return False
        ck = load_checkpoint(p, self.model, self.opt)
        self.rng.setstate(ck["rng"])
        self._order = list(ck["order"])
        self.step = int(ck["step"])
        return True

    def run(self) -> list[dict[str, float]]:
        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        history = []
        t_start = time.perf_counter()
        with (self.out / "metrics.jsonl").open("a", encoding="utf-8") as log:
            bar = _progress(range(self.step, self.total_steps), self.progress, "sft")
            try:
                for _ in bar:
                    m = self.train_step()
                    history.append(m)
                    log.write(json.dumps(m) + "\n")
                    log.flush()
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{m['loss']:.3f}")
                    if c.save_every and self.step % c.save_every == 0:
                        self.save()
                    if c.time_budget_s and time.perf_counter() - t_start > c.time_budget_s:
                        break
            finally:
                self.save()
        return history

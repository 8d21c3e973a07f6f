"""The training loop SFT and GRPO share: schedule, metrics log, checkpoints, resume, time budget.

Why one loop: both trainers are long CPU runs that must survive being stopped (a time budget, Ctrl-C,
a shared machine) and continue exactly where they were, so saving and resuming must restore the same
things the same way — trainable weights, optimizer, step, the example order and every RNG. A subclass
only says how to take one step (`train_step`), how many steps the run has (`total_steps`), which extra
state its resume needs (`extra_state` / `load_extra_state`) and what to show on the progress bar.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def linear_lr(step: int, base: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up over `warmup_steps`, then linear decay to 0 at `total_steps` (TRL's default)."""
    if warmup_steps and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return base * max(0.0, 1.0 - (step - warmup_steps) / span)


def trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """Only the parameters that train (LoRA or projectors): small checkpoints."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the trainable weights and optimizer state saved by a trainer; returns the rest."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in ck["trainable"].items():
            named[n].copy_(t)
    opt.load_state_dict(ck["optimizer"])
    return ck


def progress(it: range, enabled: bool, desc: str) -> Iterator[int] | Any:
    """A tqdm bar over `it` when asked for and installed, else `it` itself."""
    if not enabled:
        return it
    try:
        from tqdm import tqdm

        return tqdm(it, desc=desc, dynamic_ncols=True, mininterval=5)
    except ImportError:
        return it


class TrainingLoop:
    """Base of the trainers. Subclasses set `model`, `opt`, `out`, `cfg` (a dataclass with `save_every`
    and `time_budget_s`), `progress` and `step`, and implement `train_step` and `total_steps`."""

    name = "train"
    model: nn.Module
    opt: torch.optim.Optimizer
    out: Path
    cfg: Any
    progress: bool
    step: int

    # -- what a subclass provides
    @property
    def total_steps(self) -> int:
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Checkpoint entries besides weights, optimizer, step and config (example order, RNGs)."""
        return {}

    def load_extra_state(self, ck: dict[str, Any]) -> None:
        """Restore what `extra_state` saved."""

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        """Progress-bar fields for one step's metrics."""
        return {"loss": f"{metrics['loss']:.3f}"}

    # -- shared
    def save(self, name: str = CHECKPOINT) -> Path:
        """Write the checkpoint atomically (a stop mid-write leaves the previous one intact)."""
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / name
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "step": self.step,
                "trainable": trainable_state(self.model),
                "optimizer": self.opt.state_dict(),
                **self.extra_state(),
                "config": asdict(self.cfg),
            },
            tmp,
        )
        tmp.replace(path)
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Load the checkpoint (default `out/checkpoint.pt`) if present; True when resumed."""
        p = Path(path) if path else self.out / CHECKPOINT
        if not p.exists():
            return False
        ck = load_checkpoint(p, self.model, self.opt)
        self.load_extra_state(ck)
        self.step = int(ck["step"])
        return True

    def run(self) -> list[dict[str, float]]:
        """Train until `total_steps` or the time budget; one JSON line of metrics per step in
        `out/metrics.jsonl`; a checkpoint every `save_every` steps and always at the end."""
        c = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        history: list[dict[str, float]] = []
        t_start = time.perf_counter()
        with (self.out / METRICS).open("a", encoding="utf-8") as log:
            bar = progress(range(self.step, self.total_steps), self.progress, self.name)
            try:
                for _ in bar:
                    m = self.train_step()
                    history.append(m)
                    log.write(json.dumps(m) + "\n")
                    log.flush()
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(**self.postfix(m))
                    if c.save_every and self.step % c.save_every == 0:
                        self.save()
                    if c.time_budget_s and time.perf_counter() - t_start > c.time_budget_s:
                        break
            finally:
                self.save()
        return history

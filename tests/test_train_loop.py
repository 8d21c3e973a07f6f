"""The loop SFT and GRPO share (train/loop.py): schedule, metrics log, and stop-and-resume that
continues exactly where an uninterrupted run would have been."""

from __future__ import annotations

import json

import pytest
import torch
from affectstream.train.loop import linear_lr
from affectstream.train.sft import SFTConfig, SFTExample, SFTTrainer
from tiny_lm import tiny_llama


def _tiny_model(seed: int = 0):
    return tiny_llama(12, seed)


EXAMPLES = [SFTExample([5, 6, 7][: 1 + i % 3], [8 + i % 3, 11]) for i in range(12)]


def _trainer(tmp_path, seed: int = 0) -> SFTTrainer:
    cfg = SFTConfig(learning_rate=3e-2, batch_size=4, epochs=3.0, warmup_steps=2, seed=3,
                    save_every=0, output_dir=str(tmp_path))  # fmt: skip
    return SFTTrainer(_tiny_model(seed), EXAMPLES, pad_id=0, config=cfg, progress=False)


def test_linear_lr_warms_up_then_decays_to_zero() -> None:
    assert [linear_lr(s, 1.0, 2, 6) for s in range(7)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    assert linear_lr(0, 1.0, 0, 4) == 1.0 and linear_lr(4, 1.0, 0, 4) == 0.0


def test_sft_run_learns_and_logs_every_step(tmp_path) -> None:
    tr = _trainer(tmp_path)
    hist = tr.run()
    assert tr.total_steps == 9 and len(hist) == 9
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"], (hist[0]["loss"], hist[-1]["loss"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == list(range(1, 10))
    assert (tmp_path / "checkpoint.pt").is_file()


def test_sft_stopped_and_resumed_equals_one_uninterrupted_run(tmp_path) -> None:
    whole = _trainer(tmp_path / "whole")
    whole.run()
    first = _trainer(tmp_path / "split")
    for _ in range(4):  # stopped after 4 of 9 steps
        first.train_step()
    first.save()
    second = _trainer(tmp_path / "split", seed=1)  # different initial weights: the checkpoint must win
    assert second.resume() and second.step == 4
    rest = second.run()
    assert [m["step"] for m in rest] == [5, 6, 7, 8, 9]
    for (name, a), b in zip(whole.model.named_parameters(), second.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_resume_without_a_checkpoint_is_false(tmp_path) -> None:
    assert not _trainer(tmp_path).resume()
    with pytest.raises(ValueError, match="at least one example"):
        SFTTrainer(_tiny_model(), [], pad_id=0, config=SFTConfig(output_dir=str(tmp_path)), progress=False)

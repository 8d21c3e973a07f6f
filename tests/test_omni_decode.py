"""The LLM decoder variants and the GPU script's code path (run on CPU with the tiny geometry)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from affectstream.engine.omni.loading import load_omni
from omni_quant import compare_decoders, int8_decoder

ROOT = Path(__file__).resolve().parents[1]


def test_accuracy_check_is_exact_for_identical_and_measures_int8(omni_tiny_ckpt: Path) -> None:
    model, _ = load_omni(omni_tiny_ckpt)
    emb = model.model.embed_tokens
    prompts = [torch.randn(40, model.cfg.hidden_size) for _ in range(2)]
    same = compare_decoders(model.llm, model.llm, emb, prompts, 6, set())
    assert same.token_agreement == same.exact_sequences == same.first_top1 == 1.0
    assert abs(same.first_kl) < 1e-6
    q = int8_decoder(model)
    assert any("quantized" in type(m).__module__ for m in q.modules())
    assert not hasattr(q.model, "vision_tower")  # decoding-only copy, towers left out
    r = compare_decoders(model.llm, q, emb, prompts, 6, set())
    assert 0.0 <= r.token_agreement <= 1.0 and r.first_kl >= 0.0
    # the original model is untouched by the int8 copy
    assert all(
        type(m).__module__.startswith("torch.nn.modules") or "quantized" not in type(m).__module__
        for m in model.modules()
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA failure")
def test_gpu_check_fails_loudly_without_cuda() -> None:
    """Asked to measure on a GPU, the check must not pass when it measured nothing; TensorRT alone may
    be reported absent (it is not installed here)."""
    out = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "gpu_check: FAILED: r1-omni torch CUDA: torch sees no CUDA device" in out.stderr
    assert "r1-omni torch CUDA: FAILED" in out.stdout
    assert "TensorRT plans: absent" in out.stdout


def test_gpu_check_code_path_runs_on_cpu_tiny() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bench")}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check_omni.py"),
            "--device",
            "cpu",
            "--config",
            "tiny",
            "--dtypes",
            "fp32",
            "--batches",
            "1",
            "--decode",
            "3",
            "--reps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| fp32 |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "1" and int(cells[2]) == 100 + 392 + 500  # text + video + audio positions
    assert all(float(c) > 0 for c in cells[3:13])

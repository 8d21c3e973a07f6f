"""The exported GGUF LoRA adapter runs in llama.cpp and matches transformers + PEFT.

A random (non-zero) LoRA on the real SmolLM2 is exported with the q/k permutation and loaded by
llama.cpp next to the base GGUF: its logits must match transformers+LoRA at the quantization floor,
move clearly away from the base model's, and beat the same adapter exported WITHOUT the permutation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

SCALE = 0.3


@pytest.mark.slow
def test_adapter_parity_with_llama_cpp(llm_gguf, hf_model, tmp_path, monkeypatch) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from affectstream.engine.llm.llama import LlamaCppLM, probe_build
    from affectstream.engine.llm.prompt import chat_messages
    from affectstream.train import export_lora
    from affectstream.train.cues import generate
    from affectstream.train.model import LoraSettings, add_lora

    reason = probe_build(llm_gguf)
    if reason is not None:
        pytest.skip(reason)
    model = hf_model.model
    pm = add_lora(model, LoraSettings(r=8, alpha=16, layers=[26, 27, 28, 29]))
    try:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * SCALE)
        good = export_lora.export_peft_model(pm, tmp_path / "good.gguf")
        with monkeypatch.context() as m:  # the same adapter without the mandatory permutation
            m.setattr(export_lora, "permute_rows", lambda w, n: w)
            bad = export_lora.export_peft_model(pm, tmp_path / "bad.gguf")
        text = hf_model.chat_prompt(chat_messages(generate(1, seed=4)[0].evidence))
        ids = hf_model.tokenize(text)
        with torch.inference_mode():
            ref = pm(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()
    finally:
        pm.unload()  # give the shared session model back without LoRA layers

    def last_logits(lora):
        # logits_all: LlamaCppLM.logits() without it returned stale values here (same with/without adapter)
        lm = LlamaCppLM(llm_gguf, threads=2, lora_path=lora, logits_all=True)
        try:
            assert lm.tokenize(text) == ids
            return lm.logits(ids, all_positions=True)[-1]
        finally:
            lm.close()

    with_good, with_bad, base = last_logits(good), last_logits(bad), last_logits(None)
    d_good = float(np.abs(with_good - ref).max())
    print(
        f"max|Δ| vs transformers+LoRA: exported {d_good:.3f}, unpermuted {float(np.abs(with_bad - ref).max()):.3f}, base {float(np.abs(base - ref).max()):.3f}"
    )
    d_bad = float(np.abs(with_bad - ref).max())
    d_base = float(np.abs(base - ref).max())
    assert d_good < 1.5, d_good  # the Q4_1 parity floor is ~0.8 (docs/models.md §6)
    top = set(np.argsort(ref)[-5:].tolist())
    assert int(with_good.argmax()) in top  # llama.cpp's top token is among transformers' top 5
    assert d_base > 2 * d_good, (d_base, d_good)  # the adapter really changes the output
    assert d_bad > 2 * d_good, (d_bad, d_good)  # and the permutation is what makes it right

"""llama.cpp decoding from input embeddings (the r1-omni spliced-prompt path), on the real SmolLM2 GGUF.

No Qwen2 GGUF of R1-Omni exists offline; what is checked is the mechanism: feeding the GGUF's own token
embeddings as an embedding batch must give exactly the greedy tokens llama.cpp gives for the token ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def decoder(llm_gguf: Path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from affectstream.engine.llm.llama import probe_build
    from affectstream.engine.omni.llama_embed import LlamaEmbedDecoder

    reason = probe_build(llm_gguf)
    if reason is not None:
        pytest.skip(reason)
    d = LlamaEmbedDecoder(llm_gguf, n_ctx=256, threads=1)
    yield d
    d.close()


@pytest.mark.slow
def test_embedding_input_equals_token_input(decoder, hf_model) -> None:
    import torch

    ids = hf_model.tokenize(
        hf_model.chat_prompt([{"role": "user", "content": "Which emotion does a broad smile show?"}])
    )
    with torch.no_grad():
        embeds = hf_model.model.get_input_embeddings()(torch.tensor(ids)).numpy()
    want = []
    for tok in decoder.llm.generate(ids, top_k=1, temp=0.0, reset=True):  # llama.cpp's own token-input path
        want.append(int(tok))
        if len(want) == 10:
            break
    got = decoder.greedy(embeds, 10, stop_ids=set())
    assert len(got.tokens[0]) == 10
    assert got.tokens[0] == want


def test_wrong_width_is_a_clear_error(decoder) -> None:
    with pytest.raises(ValueError, match="embeddings are 7 wide"):
        decoder.greedy(np.zeros((3, 7), np.float32), 2, set())


@pytest.fixture(scope="module")
def tiny_gguf(omni_tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    pytest.importorskip("gguf")
    from affectstream.export.omni_gguf import export_llm_gguf

    return export_llm_gguf(omni_tiny_ckpt, tmp_path_factory.mktemp("gguf") / "llm.gguf")


def test_checkpoint_llm_as_gguf_matches_torch(tiny_gguf: Path, omni_tiny_ckpt: Path) -> None:
    """The exported Qwen2 GGUF (F32) decodes the same spliced-size prompt as the torch fp32 reference."""
    import torch
    from affectstream.engine.omni.decode import greedy
    from affectstream.engine.omni.llama_embed import LlamaEmbedDecoder
    from affectstream.engine.omni.loading import load_omni

    model, _ = load_omni(omni_tiny_ckpt)
    d = LlamaEmbedDecoder(tiny_gguf, n_ctx=1100, threads=1)
    try:
        embeds = torch.randn(992, model.cfg.hidden_size, generator=torch.Generator().manual_seed(3)) * 0.5
        got = d.greedy(embeds.numpy(), 8, set())
        ref = greedy(model.llm, model.model.embed_tokens, embeds[None], 8, set())
    finally:
        d.close()
    assert got.tokens == ref.tokens
    torch.testing.assert_close(got.first_logits, ref.first_logits, atol=2e-3, rtol=1e-3)


def test_analyzer_decodes_with_llama_cpp(tiny_gguf: Path, omni_tiny_ckpt: Path, omni_window) -> None:
    from affectstream.engine.omni.analyzer import OmniAnalyzer

    torch_a = OmniAnalyzer.from_checkpoint(omni_tiny_ckpt, max_new_tokens=5)
    llama_a = OmniAnalyzer.from_checkpoint(omni_tiny_ckpt, max_new_tokens=5, llm_gguf=tiny_gguf)
    torch_a.stop_ids = llama_a.stop_ids = set()
    w = omni_window(index=9, first=900)
    rt, rl = torch_a.analyze(w), llama_a.analyze(w)
    assert llama_a.last_tokens == torch_a.last_tokens and len(llama_a.last_tokens[0]) == 5
    assert rl.label == rt.label and llama_a.reasoning(w).window.index == 9
    llama_a.close()

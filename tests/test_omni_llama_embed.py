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

"""Write the r1-omni checkpoint's Qwen2 LLM as a GGUF (architecture `qwen2`) for llama.cpp decoding.

Only the language model goes in: `model.embed_tokens`, `model.layers.*`, `model.norm` (lm_head is tied).
The towers/projectors stay in torch/ONNX and their spliced embeddings are fed to llama.cpp as an
embedding batch (engine/omni/llama_embed.py). Tensors are written in F32 or F16 (quantise further with
llama.cpp's `llama-quantize`). Tokenizer metadata comes from the checkpoint's `tokenizer.json` (byte-level
BPE: tokens + merges, Qwen2 pre-tokenizer) so llama.cpp can load the vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from affectstream.engine.omni.loading import load_omni

_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _vocab(checkpoint: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    tj = json.loads((checkpoint / "tokenizer.json").read_text())
    model = tj["model"]
    if model.get("type") != "BPE":
        raise ValueError(f"tokenizer.json model type {model.get('type')!r} is not BPE")
    by_id = {i: t for t, i in model["vocab"].items()}
    special = {}
    for a in tj.get("added_tokens", []):
        by_id[a["id"]] = a["content"]
        special[a["id"]] = a.get("special", True)
    tokens, types = [], []
    for i in range(vocab_size):  # the embedding table may be padded past the tokenizer (Qwen: 151936)
        if i in by_id:
            tokens.append(by_id[i])
            types.append(3 if special.get(i) else 1)  # CONTROL / NORMAL
        else:
            tokens.append(f"[PAD{i}]")
            types.append(5)  # UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def export_llm_gguf(checkpoint: str | Path, out_path: str | Path, dtype: str = "f32") -> Path:
    import gguf

    ckpt = Path(checkpoint)
    model, _ = load_omni(ckpt)
    cfg = model.cfg
    out_path = Path(out_path)
    w = gguf.GGUFWriter(str(out_path), "qwen2")
    w.add_name("r1-omni-llm")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    tokens, types, merges = _vocab(ckpt, cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_add_bos_token(False)
    np_dtype = np.float32 if dtype == "f32" else np.float16
    sd = model.state_dict()

    def put(name: str, t: object) -> None:
        arr = t.detach().float().numpy()  # type: ignore[attr-defined]
        w.add_tensor(name, arr.astype(np.float32 if arr.ndim == 1 else np_dtype))  # norms/biases stay F32

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        for src, dst in _LAYER.items():
            put(f"blk.{i}.{dst}", sd[f"model.layers.{i}.{src}"])
    put("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        put("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path

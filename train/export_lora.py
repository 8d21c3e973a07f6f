"""PEFT LoRA → GGUF adapter that llama.cpp loads next to the base GGUF (`Llama(lora_path=...)`).

Format (docs/models.md §6, matches llama.cpp's own convert_lora_to_gguf.py): metadata
`general.architecture`=llama, `general.type`=adapter, `adapter.type`=lora, `adapter.lora.alpha`;
tensors `blk.{L}.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.weight.lora_a` = PEFT
`lora_A.weight` (r×in) and `.lora_b` = `lora_B.weight` (out×r).

The q/k permutation is MANDATORY: llama.cpp's converter permutes the rows of the base q and k
weights (RoPE layout: rows viewed as (heads, 2, head_dim/2) become (heads, head_dim/2, 2)), so the
adapter's lora_b rows for attn_q/attn_k must get the same permutation — without it the adapter
loads silently and gives wrong outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation: rows (heads, 2, hd/2) → (heads, hd/2, 2), flattened back."""
    out = w.shape[0]
    if out % (2 * n_head):
        raise ValueError(f"{out} rows do not split into {n_head} heads of even size")
    return w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def lora_tensors(
    state: Mapping[str, Any], n_head: int, n_head_kv: int, dtype: np.dtype = np.float32
) -> dict[str, np.ndarray]:
    """GGUF tensor name → array, from a PEFT LoRA state dict (names as PEFT writes them)."""
    out: dict[str, np.ndarray] = {}
    for key, t in state.items():
        m = _KEY.search(key)
        if not m:
            continue
        layer, proj, ab = int(m.group(1)), m.group(2), m.group(3)
        if proj not in _NAMES:
            raise ValueError(f"LoRA on {proj!r} has no llama.cpp tensor name (key {key})")
        a = t.detach().float().cpu().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float32)
        if ab == "B" and proj == "q_proj":
            a = permute_rows(a, n_head)
        elif ab == "B" and proj == "k_proj":
            a = permute_rows(a, n_head_kv)
        name = f"blk.{layer}.{_NAMES[proj]}.weight.lora_{ab.lower()}"
        out[name] = np.ascontiguousarray(a.astype(dtype))
    if not out:
        raise ValueError("no LoRA tensors found in the state dict")
    a_keys = {n.removesuffix("lora_a") for n in out if n.endswith("lora_a")}
    b_keys = {n.removesuffix("lora_b") for n in out if n.endswith("lora_b")}
    missing = a_keys ^ b_keys
    if missing:
        raise ValueError(f"unpaired LoRA tensors: {sorted(missing)[:4]}")
    return out


def write_adapter(
    path: str | Path,
    state: Mapping[str, Any],
    alpha: float,
    n_head: int,
    n_head_kv: int,
    name: str = "affectstream-lite-reasoner",
    f16: bool = False,
) -> Path:
    """Write the GGUF LoRA adapter; returns its path."""
    import gguf

    tensors = lora_tensors(state, n_head, n_head_kv, np.float16 if f16 else np.float32)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_string("general.type", "adapter")
    w.add_string("general.name", name)
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(alpha))
    for n in sorted(tensors, key=_order):
        w.add_tensor(n, tensors[n])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


def _order(name: str) -> tuple[int, str]:
    return int(name.split(".")[1]), name


def export_peft_model(model: Any, path: str | Path, f16: bool = False) -> Path:
    """Export a live PEFT model's (default) adapter, reading alpha and head counts from it."""
    from peft import get_peft_model_state_dict

    cfg = model.peft_config["default"]
    base_cfg = model.get_base_model().config
    state = get_peft_model_state_dict(model)
    return write_adapter(
        path,
        state,
        alpha=float(cfg.lora_alpha),
        n_head=int(base_cfg.num_attention_heads),
        n_head_kv=int(base_cfg.num_key_value_heads),
        f16=f16,
    )

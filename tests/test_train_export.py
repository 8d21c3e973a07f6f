"""LoRA → GGUF adapter: llama.cpp's q/k row permutation and the adapter file layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affectstream.train.export_lora import lora_tensors, permute_rows, write_adapter


def test_permute_rows_hand_computed() -> None:
    # one head of dim 4: rows (2, 2) -> swapped -> 0, 2, 1, 3
    w = np.arange(4)[:, None] * np.ones((4, 3))
    assert permute_rows(w, 1)[:, 0].tolist() == [0, 2, 1, 3]
    # two heads of dim 4: the permutation stays inside each head
    w = np.arange(8)[:, None].astype(float)
    assert permute_rows(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(ValueError, match="do not split"):
        permute_rows(np.zeros((6, 2)), 4)


def _state(r: int = 2, hidden: int = 16, kv: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    st = {}
    for proj, out in (("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)):
        pre = f"base_model.model.model.layers.3.self_attn.{proj}"
        st[f"{pre}.lora_A.weight"] = torch.randn(r, hidden, generator=g)
        st[f"{pre}.lora_B.weight"] = torch.randn(out, r, generator=g)
    pre = "base_model.model.model.layers.3.mlp.down_proj"
    st[f"{pre}.lora_A.weight"] = torch.randn(r, 32, generator=g)
    st[f"{pre}.lora_B.weight"] = torch.randn(hidden, r, generator=g)
    return st


def test_lora_tensors_names_and_permutation() -> None:
    st = _state()
    t = lora_tensors(st, n_head=4, n_head_kv=2)
    assert sorted(t) == sorted(
        f"blk.3.{n}.weight.lora_{ab}" for n in ("attn_q", "attn_k", "attn_v", "ffn_down") for ab in "ab"
    )
    qb = st["base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight"].numpy()
    assert np.array_equal(t["blk.3.attn_q.weight.lora_b"], permute_rows(qb, 4))
    assert not np.array_equal(t["blk.3.attn_q.weight.lora_b"], qb)
    kb = st["base_model.model.model.layers.3.self_attn.k_proj.lora_B.weight"].numpy()
    assert np.array_equal(t["blk.3.attn_k.weight.lora_b"], permute_rows(kb, 2))
    vb = st["base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"].numpy()
    assert np.array_equal(t["blk.3.attn_v.weight.lora_b"], vb)  # v is not permuted
    qa = st["base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"].numpy()
    assert np.array_equal(t["blk.3.attn_q.weight.lora_a"], qa)


def test_unpaired_or_empty_state_is_an_error() -> None:
    st = _state()
    del st["base_model.model.model.layers.3.mlp.down_proj.lora_B.weight"]
    with pytest.raises(ValueError, match="unpaired"):
        lora_tensors(st, 4, 2)
    with pytest.raises(ValueError, match="no LoRA tensors"):
        lora_tensors({"x": torch.zeros(1)}, 4, 2)


def test_adapter_file_layout(tmp_path) -> None:
    gguf = pytest.importorskip("gguf")
    p = write_adapter(tmp_path / "a.gguf", _state(), alpha=4.0, n_head=4, n_head_kv=2)
    rd = gguf.GGUFReader(str(p))

    def field(name: str):
        f = rd.fields[name]
        v = f.parts[f.data[0]]
        return bytes(v).decode() if v.dtype == np.uint8 else float(v[0])

    assert field("general.architecture") == "llama"
    assert field("general.type") == "adapter"
    assert field("adapter.type") == "lora"
    assert field("adapter.lora.alpha") == 4.0
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in rd.tensors}
    # GGUF lists dims fastest-first: lora_a (r×in) → [in, r], lora_b (out×r) → [r, out]
    assert shapes["blk.3.attn_q.weight.lora_a"] == (16, 2)
    assert shapes["blk.3.attn_q.weight.lora_b"] == (2, 16)
    assert shapes["blk.3.attn_k.weight.lora_b"] == (2, 8)

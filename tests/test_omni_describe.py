"""Full-size r1-omni on the meta device: key/shape table = docs/r1omni.md §2.3, counts = §6.1."""

from __future__ import annotations

import pytest
from affectstream.engine.omni.config import full_size
from affectstream.engine.omni.describe import EXPECTED_TOTAL, component_counts, describe_text, total_stored
from affectstream.engine.omni.loading import checkpoint_table

# Every shape docs/r1omni.md §2.3 states, written out from the document (not computed).
P = "model.mm_projector."
DOC_SHAPES: dict[str, tuple[int, ...]] = {
    "model.embed_tokens.weight": (151936, 896),
    "model.norm.weight": (896,),
    "model.layers.0.self_attn.q_proj.weight": (896, 896),
    "model.layers.0.self_attn.q_proj.bias": (896,),
    "model.layers.23.self_attn.k_proj.weight": (128, 896),
    "model.layers.23.self_attn.k_proj.bias": (128,),
    "model.layers.5.self_attn.v_proj.weight": (128, 896),
    "model.layers.5.self_attn.o_proj.weight": (896, 896),
    "model.layers.5.mlp.gate_proj.weight": (4864, 896),
    "model.layers.5.mlp.up_proj.weight": (4864, 896),
    "model.layers.5.mlp.down_proj.weight": (896, 4864),
    "model.layers.5.input_layernorm.weight": (896,),
    "model.layers.5.post_attention_layernorm.weight": (896,),
    P + "s1_video.b1.conv1.conv.weight": (896, 768, 1, 1),
    P + "s1_body.b2.conv1.conv.weight": (896, 896, 1, 1),
    P + "s2_video.b1.conv1.conv.weight": (896, 896, 1, 1),
    P + "s1_video.b1.conv1.bn.weight": (896,),
    P + "s1_video.b1.conv1.bn.bias": (896,),
    P + "s2_body.b2.conv2.conv.weight": (896, 1, 3, 3),
    P + "s2_body.b2.conv2.bn.weight": (896,),
    P + "s1_video.b1.se.fc1.weight": (192, 896, 1, 1),
    P + "s1_video.b2.se.fc1.weight": (224, 896, 1, 1),
    P + "s1_video.b1.se.fc2.weight": (896, 192, 1, 1),
    P + "s1_video.b1.se.fc2.bias": (896,),
    P + "s2_video.b1.se.fc1.weight": (224, 896, 1, 1),
    P + "s1_body.b1.conv3.conv.weight": (896, 896, 1, 1),
    P + "s1_body.b1.conv3.bn.bias": (896,),
    P + "s1_video.b1.downsample.conv.weight": (896, 768, 1, 1),
    P + "s1_body.b1.downsample.bn.weight": (896,),
    P + "sampler_video.0.weight": (896, 896, 2, 2, 2),
    P + "sampler_body.0.bias": (896,),
    P + "readout_video.0.weight": (896, 896),
    P + "readout_body.2.bias": (896,),
    P + "mlp_2xgelu_face.0.weight": (896, 768),
    P + "mlp_2xgelu_face.2.weight": (896, 896),
    "model.audio_projector.0.weight": (896, 1280),
    "model.audio_projector.2.weight": (896, 896),
    "model.bert_gate.0.weight": (3584, 768),
    "model.bert_gate.2.weight": (3, 3584),
    "model.bert_gate.2.bias": (3,),
    "model.bert_model.embeddings.word_embeddings.weight": (30522, 768),
    "model.bert_model.pooler.dense.weight": (768, 768),
}


@pytest.fixture(scope="module")
def table() -> dict[str, tuple[int, ...]]:
    return checkpoint_table(full_size())


def test_doc_shapes(table: dict[str, tuple[int, ...]]) -> None:
    wrong = {k: (table.get(k), v) for k, v in DOC_SHAPES.items() if table.get(k) != v}
    assert not wrong, wrong


def test_prefixes_and_absences(table: dict[str, tuple[int, ...]]) -> None:
    keys = set(table)
    assert "lm_head.weight" not in keys  # tied, not stored
    # downsample only in s1 b1 (the width-changing block)
    assert not any(".b2.downsample." in k or "s2_video.b1.downsample" in k for k in keys)
    assert not any("feature_compressor" in k for k in keys)  # HumanOmni-7B only
    vt = "model.vision_tower.vision_tower.vision_model."
    assert f"{vt}embeddings.patch_embedding.weight" in keys
    assert f"{vt}encoder.layers.11.mlp.fc1.weight" in keys
    assert f"{vt}post_layernorm.weight" in keys
    assert any(k.startswith(f"{vt}head.") for k in keys)
    at = "model.audio_tower.audio_tower."
    assert table[f"{at}encoder.conv1.weight"] == (1280, 128, 3)
    assert table[f"{at}encoder.embed_positions.weight"] == (1500, 1280)
    assert f"{at}encoder.layers.31.fc2.weight" in keys
    assert {f"{at}projector.weight", f"{at}classifier.weight"} <= keys
    assert (
        sum(k.startswith("model.bert_model.encoder.layer.") and k.endswith("query.weight") for k in keys)
        == 12
    )
    assert sum(k.startswith("model.layers.") and k.endswith("q_proj.weight") for k in keys) == 24


def test_counts_match_r1omni_7_5() -> None:
    rows = {r.name.strip(): r for r in component_counts()}
    assert rows["Qwen2 LLM (tied)"].stored == 494_032_768
    assert rows["SigLIP vision model"].stored == 92_884_224
    assert rows["Whisper encoder (+ unused classifier head)"].used == 636_968_960
    assert rows["Whisper encoder (+ unused classifier head)"].stored == 637_297_410
    assert rows["BERT"].stored == 109_482_240
    assert rows["bert_gate"].stored == 2_766_851
    assert rows["mm_projector (all_in_one_small)"].stored == 34_762_944
    assert rows["mm_projector.s1_video"].stored == 4_561_056
    assert rows["mm_projector.sampler_video"].stored == 6_423_424
    assert rows["mm_projector.s2_video"].stored == 4_043_200
    assert rows["mm_projector.readout_video"].stored == 1_607_424
    assert rows["mm_projector.mlp_2xgelu_face"].stored == 1_492_736
    assert rows["audio_projector"].stored == 1_951_488
    assert total_stored(component_counts()) == EXPECTED_TOTAL == 1_373_177_925


def test_table_total_is_stored_total(table: dict[str, tuple[int, ...]]) -> None:
    import math

    assert sum(math.prod(s) for s in table.values()) == 1_373_177_925


def test_describe_text() -> None:
    text = describe_text()
    assert "1,373,177,925" in text and "matches the published checkpoint" in text

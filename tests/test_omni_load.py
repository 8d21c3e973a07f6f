"""Strict loading of r1-omni checkpoints: the tiny one loads and generates; damaged ones fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from affectstream.engine.omni.decode import greedy
from affectstream.engine.omni.loading import load_omni
from affectstream.engine.runtimes.base import ModelFileError
from safetensors.torch import load_file, save_file


@pytest.fixture
def ckpt_copy(omni_tiny_ckpt: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(omni_tiny_ckpt, dst)
    return dst


def _rewrite(folder: Path, edit) -> None:
    f = folder / "model.safetensors"
    sd = load_file(str(f))
    edit(sd)
    save_file(sd, str(f))


def test_tiny_loads_strictly_and_generates(omni_tiny_ckpt: Path) -> None:
    model, report = load_omni(omni_tiny_ckpt)
    assert report.loaded == len(model.state_dict()) - 1  # everything but the tied lm_head
    assert any(k.endswith("head.probe") for k in report.known_unused)
    assert any(k.endswith("classifier.weight") for k in report.known_unused)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    stored = load_file(str(omni_tiny_ckpt / "model.safetensors"))
    k = "model.mm_projector.s1_video.b1.se.fc1.weight"
    assert torch.equal(model.state_dict()[k], stored[k])
    embeds = model.model.embed_tokens(torch.tensor([[5, 9, 17, 33]]))
    out = greedy(model.llm, model.model.embed_tokens, embeds, 6, stop_ids=set())
    assert len(out.tokens[0]) == 6 and all(0 <= t < model.cfg.vocab_size for t in out.tokens[0])


@pytest.mark.parametrize("penalty", [1.0, 5.0])
def test_greedy_loop_matches_hf_generate(omni_tiny_ckpt: Path, penalty: float) -> None:
    """Our decode loop (used for all timings) equals transformers' greedy generate from embeddings,
    including generate()'s repetition_penalty (applied from generation_config even when greedy)."""
    model, _ = load_omni(omni_tiny_ckpt)
    embeds = torch.randn(1, 30, model.cfg.hidden_size) * 0.5
    ours = greedy(
        model.llm, model.model.embed_tokens, embeds, 10, stop_ids=set(), repetition_penalty=penalty
    ).tokens[0]
    with torch.inference_mode():
        ref = model.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(1, 30, dtype=torch.long),
            max_new_tokens=10,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            min_new_tokens=10,
            repetition_penalty=penalty,
        )
    assert ours == ref[0, -10:].tolist()
    if (
        penalty != 1.0
    ):  # the penalty must actually change something on this prompt, or the test proves nothing
        plain = greedy(model.llm, model.model.embed_tokens, embeds, 10, stop_ids=set()).tokens[0]
        assert plain != ours


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_load(omni_tiny_ckpt: Path, dtype: str) -> None:
    model, _ = load_omni(omni_tiny_ckpt, dtype=dtype)
    want = torch.bfloat16 if dtype == "bf16" else torch.float16
    assert {p.dtype for p in model.parameters()} == {want}


def test_missing_key(ckpt_copy: Path) -> None:
    _rewrite(ckpt_copy, lambda sd: sd.pop("model.bert_gate.2.weight"))
    with pytest.raises(ModelFileError, match=r"1 missing key\(s\): model\.bert_gate\.2\.weight"):
        load_omni(ckpt_copy)


def test_unexpected_key(ckpt_copy: Path) -> None:
    _rewrite(ckpt_copy, lambda sd: sd.__setitem__("model.feature_compressor.weight", torch.zeros(2)))
    with pytest.raises(ModelFileError, match=r"unexpected key\(s\): model\.feature_compressor\.weight"):
        load_omni(ckpt_copy)


def test_stored_tied_head_is_accepted(ckpt_copy: Path) -> None:
    _rewrite(ckpt_copy, lambda sd: sd.__setitem__("lm_head.weight", sd["model.embed_tokens.weight"].clone()))
    _, report = load_omni(ckpt_copy)
    assert "lm_head.weight" in report.known_unused


def test_wrong_shape(ckpt_copy: Path) -> None:
    key = "model.mm_projector.readout_video.0.weight"
    _rewrite(ckpt_copy, lambda sd: sd.__setitem__(key, sd[key][:, :-1].contiguous()))
    with pytest.raises(
        ModelFileError,
        match=rf"wrong shape, e\.g\. {key.replace('.', '[.]')} is \[64, 63\], expected \[64, 64\]",
    ):
        load_omni(ckpt_copy)


def test_truncated_file(ckpt_copy: Path) -> None:
    f = ckpt_copy / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"damaged checkpoint file .*model\.safetensors"):
        load_omni(ckpt_copy)


def test_garbage_header(ckpt_copy: Path) -> None:
    (ckpt_copy / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError, match="damaged checkpoint file"):
        load_omni(ckpt_copy)


def test_missing_weights_and_config(ckpt_copy: Path, tmp_path: Path) -> None:
    (ckpt_copy / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"no model\.safetensors"):
        load_omni(ckpt_copy)
    with pytest.raises(ModelFileError, match="checkpoint folder not found"):
        load_omni(tmp_path / "nowhere")
    (ckpt_copy / "config.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_omni(ckpt_copy)


def test_bad_config_value(ckpt_copy: Path) -> None:
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg["mm_projector_type"] = "all_in_one"
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match="mm_projector_type 'all_in_one' not supported"):
        load_omni(ckpt_copy)


def test_external_tower_folder_overrides(ckpt_copy: Path, tmp_path: Path) -> None:
    """A SigLIP folder in HF layout (`vision_model.*`) replaces the checkpoint's own tower tensors."""
    sd = load_file(str(ckpt_copy / "model.safetensors"))
    prefix = "model.vision_tower.vision_tower."
    ext = {k[len(prefix) :]: torch.full_like(v, 0.5) for k, v in sd.items() if k.startswith(prefix)}
    folder = tmp_path / "siglip"
    folder.mkdir()
    save_file(ext, str(folder / "model.safetensors"))
    cfg = json.loads((ckpt_copy / "config.json").read_text())["affectstream_towers"]["vision"]
    (folder / "config.json").write_text(json.dumps({"vision_config": cfg}))
    model, report = load_omni(ckpt_copy, vision_dir=folder)
    w = model.model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight
    assert torch.all(w == 0.5)
    assert report.sources[prefix] == str(folder)

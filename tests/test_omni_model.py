"""r1-omni parts against their references: SigLIP layer −2, Whisper encoder, 2x2 face pooling, splicing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from affectstream.engine.omni.config import AUDIO_TOKEN_INDEX, VIDEO_TOKEN_INDEX, tiny
from affectstream.engine.omni.loading import load_omni
from affectstream.engine.omni.model import OmniModel
from affectstream.engine.omni.projector import AllInOneSmall
from affectstream.engine.omni.vision import siglip_config


@pytest.fixture(scope="module")
def model(omni_tiny_ckpt: Path) -> OmniModel:
    return load_omni(omni_tiny_ckpt)[0]


def test_vision_tower_is_hf_hidden_states_minus_2(model: OmniModel) -> None:
    """Our truncated tower equals HF SiglipVisionModel(output_hidden_states)[-2] with the same weights."""
    from transformers import SiglipVisionModel

    torch.manual_seed(0)
    hf = SiglipVisionModel(siglip_config(model.cfg, attn="eager")).eval()
    ours = model.model.vision_tower.vision_tower.vision_model.state_dict()
    hf_sd = hf.state_dict()
    for k in hf_sd:
        short = k.removeprefix("vision_model.")
        if short in ours:
            hf_sd[k] = ours[short]
    hf.load_state_dict(hf_sd)
    px = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = hf(pixel_values=px, output_hidden_states=True).hidden_states[-2]
        got = model.encode_frames(px)
    assert got.shape == (2, 196, model.cfg.mm_hidden_size)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_audio_tower_equals_hf_encoder_at_30s(model: OmniModel) -> None:
    enc = model.model.audio_tower.audio_tower.encoder
    mel = torch.randn(1, 128, 3000)
    with torch.no_grad():
        ref = enc(mel).last_hidden_state
        got = model.model.audio_tower(mel)
        tokens = model.encode_audio(mel)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert tokens.shape == (1, 500, model.cfg.hidden_size)
    with torch.no_grad():
        fast = model.encode_audio(mel[:, :, :200])
    assert fast.shape == (1, 33, model.cfg.hidden_size)
    with pytest.raises(ValueError, match="even frame count"):
        model.model.audio_tower(mel[:, :, :201])


def test_face_branch_pooling_is_2x2_average() -> None:
    cfg = tiny()
    proj = AllInOneSmall(cfg).eval()
    x = torch.randn(2, 8, 196, cfg.mm_hidden_size)
    with torch.no_grad():
        face = proj._face(x)
        per_patch = proj.mlp_2xgelu_face(x).reshape(16, 14, 14, -1).permute(0, 3, 1, 2)
        ref = F.avg_pool2d(per_patch, 2).permute(0, 2, 3, 1).reshape(2, 8 * 49, -1)
        out = proj(x)
    torch.testing.assert_close(face, ref, atol=1e-5, rtol=1e-5)
    assert out.shape == (3, 2, 392, cfg.hidden_size)


def test_branches_never_mix_samples() -> None:
    """Branches mix frames (Conv3d) but never samples: sample 0's output ignores sample 1."""
    cfg = tiny()
    proj = AllInOneSmall(cfg).eval()
    x = torch.randn(2, 8, 196, cfg.mm_hidden_size)
    y = x.clone()
    y[1] = torch.randn_like(y[1])
    with torch.no_grad():
        a, b = proj(x), proj(y)
    torch.testing.assert_close(a[:, 0], b[:, 0])
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_splice_puts_392_video_and_500_audio_at_placeholders(omni_tiny_analyzer) -> None:
    a = omni_tiny_analyzer
    m = a.model
    ids = a.prompt_ids(video=True, audio=True)
    assert ids.count(VIDEO_TOKEN_INDEX) == 1 and ids.count(AUDIO_TOKEN_INDEX) == 1
    assert ids.index(VIDEO_TOKEN_INDEX) < ids.index(AUDIO_TOKEN_INDEX)
    h = m.cfg.hidden_size
    video = torch.arange(392 * h, dtype=torch.float32).reshape(392, h) + 1e6
    audio = -torch.arange(500 * h, dtype=torch.float32).reshape(500, h) - 1e6
    with torch.no_grad():
        s = m.splice(ids, video, audio)
        text_ids = [t for t in ids if t >= 0]
        text_emb = m.model.embed_tokens(torch.tensor(text_ids))
    iv, ia = ids.index(VIDEO_TOKEN_INDEX), ids.index(AUDIO_TOKEN_INDEX)
    assert s.spans == {"video": (iv, 392), "audio": (ia - 1 + 392, 500)}
    assert s.embeds.shape == (len(ids) - 2 + 892, h)
    torch.testing.assert_close(s.embeds[iv : iv + 392], video)
    torch.testing.assert_close(s.embeds[ia - 1 + 392 : ia - 1 + 892], audio)
    mask = torch.ones(s.embeds.shape[0], dtype=torch.bool)
    mask[iv : iv + 392] = False
    mask[ia - 1 + 392 : ia - 1 + 892] = False
    torch.testing.assert_close(s.embeds[mask], text_emb)
    # the text markers around the blocks are plain text, as in the reference
    tok = a.tokenizer
    assert tok.decode(ids[:iv]).endswith("<vi_start>")
    assert tok.decode(ids[iv + 1 : ia]) == "<vi_end>\n<au_start>"
    assert tok.decode(ids[ia + 1 :]).startswith("<au_end>\nAs an emotional recognition expert")


def test_splice_errors(omni_tiny_analyzer) -> None:
    m = omni_tiny_analyzer.model
    ids = omni_tiny_analyzer.prompt_ids(video=True, audio=False)
    v = torch.zeros(392, m.cfg.hidden_size)
    with pytest.raises(ValueError, match="no video features"):
        m.splice(ids, None, None)
    with pytest.raises(ValueError, match="no <audio> placeholder"):
        m.splice(ids, v, torch.zeros(5, m.cfg.hidden_size))

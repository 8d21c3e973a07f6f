"""ONNX export of the r1-omni encoders: parity with PyTorch, dynamic shapes, and a parity check that bites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from affectstream.export.omni_onnx import PARITY_ATOL, _parts, export_omni, onnx_parity


@pytest.fixture(scope="module")
def exported(omni_tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return export_omni(omni_tiny_ckpt, tmp_path_factory.mktemp("omni_onnx"))


def test_all_parts_export_within_tolerance(exported: dict) -> None:
    assert set(exported) == {"vision", "projector", "audio", "gate"}
    for name, (path, diff) in exported.items():
        assert path.exists() and path.stat().st_size > 0, name
        assert diff is not None and diff <= PARITY_ATOL, (name, diff)


def test_audio_graph_takes_fast_and_faithful_lengths(exported: dict) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(exported["audio"][0]), providers=["CPUExecutionProvider"])
    for frames, tokens in ((3000, 500), (200, 33), (600, 100)):
        out = sess.run(None, {"mel": np.random.randn(1, 128, frames).astype(np.float32)})[0]
        assert out.shape[:2] == (1, tokens)


def test_parity_check_detects_a_changed_model(exported: dict, omni_tiny_ckpt: Path) -> None:
    from affectstream.engine.omni.loading import load_omni

    model, _ = load_omni(omni_tiny_ckpt, attn="eager")
    part = next(p for p in _parts(model) if p.name == "projector")
    assert onnx_parity(part, exported["projector"][0]) <= PARITY_ATOL
    with torch.no_grad():
        model.model.mm_projector.readout_video[2].bias.add_(0.01)
    assert onnx_parity(part, exported["projector"][0]) > PARITY_ATOL


def test_analyzer_with_onnx_encoders_matches_torch(exported: dict, omni_tiny_ckpt: Path, omni_window) -> None:
    """Same window through torch encoders and through the exported graphs: same tokens, same generation."""
    from affectstream.engine.omni.analyzer import OmniAnalyzer

    folder = exported["vision"][0].parent
    torch_a = OmniAnalyzer.from_checkpoint(omni_tiny_ckpt, max_new_tokens=6)
    onnx_a = OmniAnalyzer.from_checkpoint(omni_tiny_ckpt, max_new_tokens=6, onnx_dir=folder, runtime="cpu")
    assert {i.name for i in onnx_a.enc.describe().values()} == {"onnxruntime"}
    torch_a.stop_ids = onnx_a.stop_ids = set()  # exactly 6 tokens each, whatever they are
    w = omni_window(index=7, first=400)
    rt, ro = torch_a.analyze(w), onnx_a.analyze(w)
    assert ro.extra["omni"]["tokens"] == rt.extra["omni"]["tokens"] == {"video": 392, "audio": 33}
    assert ro.extra["omni"]["gate"] == rt.extra["omni"]["gate"]
    assert onnx_a.last_tokens == torch_a.last_tokens and len(torch_a.last_tokens[0]) == 6
    assert onnx_a.last_texts == torch_a.last_texts
    assert ro.label == rt.label
    onnx_a.close()


def test_onnx_folder_missing_parts(tmp_path: Path) -> None:
    from affectstream.engine.omni.onnx_encoders import OnnxEncoders
    from affectstream.engine.runtimes.base import ModelFileError

    with pytest.raises(ModelFileError, match=r"lacks omni_vision\.onnx"):
        OnnxEncoders(tmp_path)

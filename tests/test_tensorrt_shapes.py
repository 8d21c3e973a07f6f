"""ONNX graphs are valid at the optimisation-profile shapes; the accuracy tool measures real drift;
the exporter's TensorRT-free steps (profiles, checks, cache hits, errors) work without a GPU."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.profile import Profile
from affectstream.engine.runtimes.base import RuntimeUnavailable
from affectstream.engine.runtimes.onnx import OrtRuntime
from affectstream.engine.runtimes.plan_cache import DeviceIdentity, PlanCache, PlanKey, ShapeRange
from affectstream.export import tensorrt as trt_export
from affectstream.export.accuracy import AccuracyReport, compare_outputs, compare_runtimes
from affectstream.export.calibration import make_calibration_set, read_windows
from affectstream.export.tensorrt import (
    BuildError,
    check_profile_shapes,
    default_shape_profile,
    export_tensorrt,
)

FAKE_GPU = DeviceIdentity("Test GPU (no TensorRT here)", "9.0", "10.5.0")


@pytest.mark.parametrize("component", ["face_short", "face_full", "expression"])
def test_lite_encoders_pass_checker_and_inference_at_profile_shapes(
    lite_profile: Path, component: str
) -> None:
    onnx_path = Profile.load(lite_profile).path(component)
    prof = default_shape_profile(onnx_path, component)
    ((_name, rng),) = prof.items()
    lo, opt, hi = trt_export.BATCH_RANGES[component]
    assert (rng.min[0], rng.opt[0], rng.max[0]) == (lo, opt, hi)
    assert rng.min[1:] == rng.max[1:]  # only the batch axis is dynamic in these encoders
    check = check_profile_shapes(onnx_path, prof)
    for point, batch in (("min", lo), ("opt", opt), ("max", hi)):
        outs = check.outputs[point]
        assert outs and all(dims[0] == batch for dims in outs.values()), (point, outs)
        assert all(isinstance(d, int) and d > 0 for dims in outs.values() for d in dims)
    if component == "expression":
        assert check.outputs["max"] == {"probs": [hi, 7]}
    else:
        size = {"face_short": 896, "face_full": 2304}[component]
        assert sorted(check.outputs["opt"].values()) == [[opt, size, 1], [opt, size, 16]]


def test_sequence_axes_get_their_own_range(tiny_seq_onnx: Path) -> None:
    prof = default_shape_profile(tiny_seq_onnx, "audio_tokens")
    r = prof["x"]
    assert r.min == (1, 1, 16) and r.opt == (8, 128, 16) and r.max == (32, 512, 16)
    check = check_profile_shapes(tiny_seq_onnx, prof)
    assert check.outputs["max"]["y"] == [32, 512, 8] and check.executed == []
    custom = {"x": ShapeRange((1, 10, 16), (2, 20, 16), (4, 40, 16))}
    prof2 = default_shape_profile(tiny_seq_onnx, "audio_tokens", overrides=custom)
    assert check_profile_shapes(tiny_seq_onnx, prof2).outputs["opt"]["y"] == [2, 20, 8]


def test_broken_graphs_are_caught_before_tensorrt(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnx

    m = onnx.load(str(tiny_onnx))
    m.graph.node[1].input[0] = "does_not_exist"
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(BuildError, match=r"bad\.onnx"):
        check_profile_shapes(bad, default_shape_profile(bad, "expression"))
    wrong_rank = {"input": ShapeRange((1, 64, 64), (2, 64, 64), (4, 64, 64))}
    with pytest.raises(BuildError, match="rank"):
        check_profile_shapes(tiny_onnx, wrong_rank)
    wrong_size = {"input": ShapeRange((1, 1, 64, 64), (2, 1, 64, 64), (4, 3, 64, 64))}
    with pytest.raises(BuildError, match="dim 1 is fixed at 1"):
        check_profile_shapes(tiny_onnx, wrong_size)  # 3 channels into a 1-channel conv


def test_accuracy_tool_measures_real_drift(lite_profile: Path, calib_clip: Path, tmp_path: Path) -> None:
    """Reference vs itself is exact; vs an INT8 Q/DQ copy the drift is measured and labels still agree."""
    from affectstream.export.calibration import profile_face_boxes
    from affectstream.export.precision import quantize_int8_qdq

    src = Profile.load(lite_profile).path("expression")
    cs = make_calibration_set(
        "expression",
        "input",
        calib_clip,
        batch_size=8,
        windows=read_windows(calib_clip),
        face_boxes=profile_face_boxes(lite_profile),
    )
    q = quantize_int8_qdq(src, list(cs.feeds()), tmp_path / "expression_int8.onnx", calibration_id="t")
    ref = OrtRuntime(src, ["CPUExecutionProvider"], 1)
    same = compare_runtimes(ref, OrtRuntime(src, ["CPUExecutionProvider"], 1), cs.feeds(), "fp32")
    assert same.max_abs_diff == 0.0 and same.min_agreement == 1.0 and same.passed()
    assert same.n_samples == 8 * len(cs.batches)
    drift = compare_runtimes(ref, OrtRuntime(q.path, ["CPUExecutionProvider"], 1), cs.feeds(), "int8")
    assert 0.0 < drift.max_abs_diff < 0.5
    assert drift.outputs["probs"].mean_abs_diff > 0.0
    assert drift.min_agreement is not None and drift.min_agreement >= 0.9 and drift.passed()
    assert "argmax agreement" in drift.summary()
    # The same drift fails a tight limit: the verdict depends on the measured numbers.
    assert not drift.passed((drift.max_rel_diff / 2, 0.9))


def test_detector_agreement_tolerates_equally_scored_anchors() -> None:
    """Two neighbouring anchors on one face score alike: picking either is the same detection."""
    from affectstream.export.accuracy import OUTPUT_MASKS, OUTPUT_TRANSFORMS

    logits = np.full((2, 6, 1), -8.0)
    logits[:, 2, 0], logits[:, 3, 0] = 4.0, 3.95  # anchors 2 and 3 both on the face
    cand = logits.copy()
    cand[:, 2, 0], cand[:, 3, 0] = 3.9, 4.1  # the candidate prefers anchor 3
    regs = np.zeros((2, 6, 16))
    cand_regs = regs.copy()
    cand_regs[:, 0] = 50.0  # wild drift on a background anchor: never decoded, must not count
    cand_regs[:, 2] = 0.5
    rep = AccuracyReport("int8")
    compare_outputs(
        rep,
        {"classificators": logits, "regressors": regs},
        {"classificators": cand, "regressors": cand_regs},
        OUTPUT_TRANSFORMS["face_short"],
        masks=OUTPUT_MASKS["face_short"],
    )
    assert rep.outputs["classificators"].argmax_agreement == 1.0
    assert rep.outputs["regressors"].max_abs_diff == pytest.approx(0.5)
    far = logits.copy()
    far[:, 5, 0] = 9.0  # the candidate would pick a background anchor: disagreement
    rep2 = AccuracyReport("int8")
    compare_outputs(
        rep2, {"classificators": logits}, {"classificators": far}, OUTPUT_TRANSFORMS["face_short"]
    )
    assert rep2.min_agreement == 0.0 and not rep2.passed()


def test_accuracy_tool_flags_nan_and_shape_errors() -> None:
    rep = AccuracyReport("fp16")
    ref = {"probs": np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)}
    compare_outputs(rep, ref, {"probs": np.array([[0.1, np.nan], [0.8, 0.2]], np.float32)})
    assert rep.max_abs_diff == float("inf") and not rep.passed()
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(AccuracyReport("fp16"), ref, {"probs": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="no output"):
        compare_outputs(AccuracyReport("fp16"), ref, {"other": np.zeros((2, 2), np.float32)})
    flipped = AccuracyReport("fp16")
    compare_outputs(flipped, ref, {"probs": ref["probs"][::-1].copy()})
    assert flipped.min_agreement == 0.0 and not flipped.passed()


def _tensorrt_installed() -> bool:
    try:
        import tensorrt  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_tensorrt_installed(), reason="tensorrt is installed here: the real build runs instead")
def test_export_without_tensorrt_reports_why(lite_profile: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(RuntimeUnavailable, match="tensorrt: Python package not installed"):
        export_tensorrt(lite_profile, fp16=True, out=tmp_path)
    args = argparse.Namespace(profile=str(lite_profile), fp16=True, int8=False, calib=None, out=tmp_path)
    assert trt_export.main_from_args(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorrt: Python package not installed" in err[0]
    with pytest.raises(BuildError, match="--int8 needs --calib"):
        export_tensorrt(lite_profile, int8=True, out=tmp_path)


@pytest.mark.skipif(_tensorrt_installed(), reason="tensorrt is installed here: the real build runs instead")
def test_export_pipeline_up_to_the_builder(lite_profile: Path, tmp_path: Path, calib_clip: Path) -> None:
    """Everything before TensorRT runs here: profiles, checks, calibration data, cache hits, stale pruning."""
    prof = Profile.load(lite_profile)
    cache = PlanCache(tmp_path)
    onnx_path = prof.path("face_short")
    shapes = default_shape_profile(onnx_path, "face_short")
    key = PlanKey.create("face_short", onnx_path, FAKE_GPU, "fp16", shapes)
    cached = cache.store(key, b"previously built engine")
    stale = cache.store(
        PlanKey("face_short", "0" * 64, FAKE_GPU, "fp16", key.shapes), b"engine of an older export"
    )
    results = export_tensorrt(lite_profile, fp16=True, out=tmp_path, device=FAKE_GPU, check_source=calib_clip)
    by = {r.component: r for r in results}
    assert by["vad"].status == "skipped" and "Silero" in by["vad"].notes[0]
    assert by["face_short"].status == "cached" and by["face_short"].plan == cached
    assert any("ONNX file changed" in n for n in by["face_short"].notes) and not stale.exists()
    for comp in ("face_full", "expression"):
        assert by[comp].status == "failed"
        assert any("tensorrt: Python package not installed" in n for n in by[comp].notes), by[comp].notes
        # Without TensorRT the strongly typed route is taken: an FP16 graph, checked against FP32.
        assert by[comp].graph_accuracy is not None and by[comp].graph_accuracy["passed"], by[comp].line()
    assert list((tmp_path / "graphs").glob("expression-fp16-*.onnx"))
    assert "face_short fp16: cached" in by["face_short"].line()


@pytest.fixture(scope="module")
def omni_onnx_dir(omni_tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from affectstream.export.omni_onnx import export_omni

    out = tmp_path_factory.mktemp("omni_onnx")
    export_omni(omni_tiny_ckpt, out)
    return out


@pytest.mark.slow
def test_omni_encoders_pass_checker_and_inference_at_profile_shapes(omni_onnx_dir: Path) -> None:
    """r1-omni graphs (tiny widths, real token geometry) at their multi-axis profiles."""
    from affectstream.export.tensorrt import list_onnx_components

    _, comps = list_onnx_components(omni_onnx_dir)
    assert [n for n, _ in comps] == ["omni_audio", "omni_gate", "omni_projector", "omni_vision"]
    tiny_bert = {  # the tiny BERT has 128 positions; the real one 512 (the default range)
        "omni_gate": {n: ShapeRange((1, 1), (1, 64), (4, 128)) for n in ("input_ids", "attention_mask")}
    }
    expect_max = {
        "omni_vision": {"features": [32, 196, 32]},
        "omni_projector": {"video_tokens": [4, 392, 64]},
        "omni_audio": {"audio_tokens": [2, 500, 64]},  # 30 s faithful mode → 500 tokens
        "omni_gate": {"gate": [4, 3]},
    }
    for name, path in comps:
        prof = default_shape_profile(path, name, tiny_bert.get(name))
        check = check_profile_shapes(path, prof)
        assert check.outputs["max"] == expect_max[name], name
    assert default_shape_profile(omni_onnx_dir / "omni_audio.onnx", "omni_audio")["mel"].opt == (1, 128, 200)


@pytest.mark.slow
@pytest.mark.skipif(_tensorrt_installed(), reason="tensorrt is installed here: the real build runs instead")
def test_omni_int8_calibration_recipes_and_fp16_fallback(
    omni_onnx_dir: Path, calib_clip: Path, tmp_path: Path
) -> None:
    wins = read_windows(calib_clip)
    vis = make_calibration_set("omni_vision", "pixel_values", calib_clip, batch_size=8, windows=wins,
                               input_dims=(8, 3, 224, 224))  # fmt: skip
    assert vis.batches[0].shape == (8, 3, 224, 224)
    x = np.concatenate(vis.batches)
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0  # SigLIP: (x/255 - 0.5) / 0.5
    aud = make_calibration_set("omni_audio", "mel", calib_clip, batch_size=1, windows=wins,
                               input_dims=(1, 128, 200))  # fmt: skip
    assert aud.batches[0].shape == (1, 128, 200) and aud.n_samples == len(wins)
    res = export_tensorrt(omni_onnx_dir, int8=True, calib=calib_clip, out=tmp_path, device=FAKE_GPU)
    by = {r.component: r for r in res}
    assert by["omni_vision"].precision == "int8" and by["omni_audio"].precision == "int8"
    for n in ("omni_gate", "omni_projector"):  # inputs are model features, not media: no INT8 recipe
        assert by[n].precision == "fp16" and "built FP16" in by[n].notes[0]
    assert all(r.status == "failed" and "tensorrt" in r.notes[-1] for r in res)
    # The INT8 Q/DQ graphs were calibrated on the real windows and measured before the build failed.
    for n in ("omni_vision", "omni_audio"):
        assert any("INT8 Q/DQ graph calibrated" in x for x in by[n].notes), by[n].notes
        assert by[n].graph_accuracy is not None and by[n].graph_accuracy["n_samples"] > 0

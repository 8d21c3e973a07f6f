"""Plan-cache keys and invalidation: a stale or foreign TensorRT plan is never handed out for loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from affectstream.engine.runtimes.plan_cache import DeviceIdentity, PlanCache, PlanKey, ShapeRange
from fixtures_tensorrt import make_conv_classifier

H100 = DeviceIdentity("NVIDIA H100 80GB HBM3", "9.0", "10.5.0")
ORIN = DeviceIdentity("Orin (NVIDIA Jetson AGX Orin Developer Kit)", "8.7", "10.3.0")
PROFILE = {"input": ShapeRange((1, 1, 64, 64), (16, 1, 64, 64), (64, 1, 64, 64))}


def key(onnx: Path, device: DeviceIdentity = H100, precision: str = "fp16", **kw) -> PlanKey:
    return PlanKey.create("expression", onnx, device, precision, kw.pop("profile", PROFILE), **kw)


def test_every_key_field_changes_the_digest(tiny_onnx: Path, tmp_path: Path) -> None:
    base = key(tiny_onnx)
    other_graph = make_conv_classifier(tmp_path / "other.onnx", seed=5)
    variants = {
        "gpu name": key(tiny_onnx, DeviceIdentity("NVIDIA A100-SXM4-80GB", "9.0", "10.5.0")),
        "compute capability": key(tiny_onnx, DeviceIdentity(H100.name, "8.9", "10.5.0")),
        "tensorrt version": key(tiny_onnx, DeviceIdentity(H100.name, "9.0", "10.3.0")),
        "precision": key(tiny_onnx, precision="int8", calibration_id="abc"),
        "shapes": key(
            tiny_onnx, profile={"input": ShapeRange((1, 1, 64, 64), (8, 1, 64, 64), (64, 1, 64, 64))}
        ),
        "onnx": key(other_graph),
    }
    digests = {name: k.digest() for name, k in variants.items()}
    assert base.digest() == key(tiny_onnx).digest()  # deterministic
    assert base.digest() not in digests.values()
    assert len(set(digests.values())) == len(digests)
    for name, k in variants.items():
        assert base.differences(k), name
    # INT8 keys also depend on the calibration data.
    assert key(tiny_onnx, precision="int8", calibration_id="a") != key(
        tiny_onnx, precision="int8", calibration_id="b"
    )
    # ...but an fp16 key ignores a calibration id (no calibration involved).
    assert key(tiny_onnx, calibration_id="a") == key(tiny_onnx)


def test_key_json_roundtrip(tiny_onnx: Path) -> None:
    k = key(tiny_onnx, precision="int8", calibration_id="c0ffee")
    assert PlanKey.from_json(json.loads(json.dumps(k.to_json()))) == k


def test_store_then_lookup_hits(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "engines")
    k = key(tiny_onnx)
    path = cache.store(k, b"serialized-engine-bytes", {"note": "x"})
    found = cache.lookup(k)
    assert found.hit and found.path == path and found.reasons == []
    assert path.read_bytes() == b"serialized-engine-bytes"
    assert not list(path.parent.glob("*.tmp"))  # atomic writes leave no temporaries
    assert cache.find_loadable("expression", tiny_onnx, H100, ("int8", "fp16")).path == path


def test_changed_onnx_is_stale_and_pruned(tmp_path: Path) -> None:
    onnx = make_conv_classifier(tmp_path / "expression.onnx", seed=0)
    cache = PlanCache(tmp_path / "engines")
    old = cache.store(key(onnx), b"old-engine")
    make_conv_classifier(onnx, seed=1)  # the model was re-exported: different weights
    k = key(onnx)
    miss = cache.lookup(k)
    assert not miss.hit
    assert any("ONNX file changed" in r for r in miss.reasons)
    assert cache.find_loadable("expression", onnx, H100, ("fp16",)).path is None
    removed = cache.prune(k)
    assert len(removed) == 1 and "ONNX file changed" in removed[0]
    assert not old.exists() and not old.with_suffix(".json").exists()


def test_foreign_plan_is_never_loaded(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "engines")
    cache.store(key(tiny_onnx, ORIN), b"built-on-a-jetson")
    found = cache.find_loadable("expression", tiny_onnx, H100, ("int8", "fp16", "fp32"))
    assert found.path is None
    text = " ".join(found.reasons)
    assert "Orin" in text and "compute capability 8.7 != 9.0" in text and "TensorRT 10.3.0" in text
    assert not cache.lookup(key(tiny_onnx, H100)).hit


def test_forged_sidecar_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    """An engine copied in under the right file name but with a foreign key inside is refused."""
    cache = PlanCache(tmp_path / "engines")
    foreign = cache.store(key(tiny_onnx, ORIN), b"jetson-engine")
    want = key(tiny_onnx, H100)
    target = cache.root / "expression" / f"fp16-{want.digest()}.engine"
    target.write_bytes(foreign.read_bytes())
    target.with_suffix(".json").write_text(foreign.with_suffix(".json").read_text())
    res = cache.lookup(want)
    assert not res.hit and "Orin" in res.reasons[0]


def test_tampered_plan_bytes_are_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "engines")
    k = key(tiny_onnx)
    p = cache.store(k, b"good-engine")
    p.write_bytes(b"truncated")
    res = cache.lookup(k)
    assert not res.hit and "hash mismatch" in res.reasons[0]
    assert cache.find_loadable("expression", tiny_onnx, H100, ("fp16",)).path is None


def test_unreadable_sidecar_is_a_miss_and_pruned(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "engines")
    k = key(tiny_onnx)
    p = cache.store(k, b"engine")
    p.with_suffix(".json").write_text("{not json")
    assert not cache.lookup(k).hit
    assert any("unreadable" in r for r in cache.prune(k))
    assert not p.exists()


def test_precisions_coexist(tiny_onnx: Path, tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "engines")
    fp16 = cache.store(key(tiny_onnx), b"fp16")
    int8 = cache.store(key(tiny_onnx, precision="int8", calibration_id="c1"), b"int8")
    assert cache.prune(key(tiny_onnx)) == []
    assert fp16.exists() and int8.exists()
    assert cache.find_loadable("expression", tiny_onnx, H100, ("int8", "fp16")).path == int8
    assert cache.find_loadable("expression", tiny_onnx, H100, ("fp16",)).path == fp16


@pytest.mark.parametrize(
    ("lo", "opt", "hi"),
    [((1, 3), (8, 3), (4, 3)), ((0, 3), (1, 3), (2, 3)), ((1, 3), (1,), (2, 3))],
)
def test_bad_shape_ranges_are_rejected(lo, opt, hi) -> None:
    with pytest.raises(ValueError):
        ShapeRange(lo, opt, hi)


def test_unknown_precision_is_rejected(tiny_onnx: Path) -> None:
    with pytest.raises(ValueError, match="precision"):
        key(tiny_onnx, precision="fp8")

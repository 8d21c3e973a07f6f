"""A profile prepared by an older affectstream gains the components pinned since (e.g. a new adapter)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def test_stale_profile_gets_new_pinned_components(lite_profile: Path, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    dest = home / "profiles" / "lite"
    for src in lite_profile.rglob("*"):  # hard links: a cheap copy of a 100 MB profile
        if src.is_file():
            out = dest / src.relative_to(lite_profile)
            out.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, out)
    manifest = dest / "manifest.json"
    data = json.loads(manifest.read_text())
    assert "llm_lora" in data["components"]
    del data["components"]["llm_lora"]
    manifest.unlink()  # do not write through the hard link into the shared fixture
    manifest.write_text(json.dumps(data))
    (dest / "lite-grpo-lora.gguf").unlink()
    monkeypatch.setenv("AFFECTSTREAM_HOME", str(home))
    monkeypatch.setenv("AFFECTSTREAM_WHEELS_FROM", str(lite_profile.parent.parent / "wheels"))

    from affectstream.engine.app import ensure_profile
    from affectstream.engine.profile import Profile

    got = ensure_profile("lite")
    assert got == dest
    prof = Profile.load(dest)
    assert prof.has("llm_lora") and prof.path("llm_lora").is_file()
    # the shared fixture profile was not touched through the hard links
    assert "llm_lora" in json.loads((lite_profile / "manifest.json").read_text())["components"]
    assert (lite_profile / "lite-grpo-lora.gguf").is_file()

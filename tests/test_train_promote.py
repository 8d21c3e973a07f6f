"""Promoting an adapter is explicit: it copies into artifacts/ and re-pins file, hash and prompt layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from affectstream.engine.hashing import sha256_file
from affectstream.train import promote as promote_mod

PINS = Path(promote_mod.__file__).parent.parent / "export" / "pins" / "lite.json"


def test_promote_updates_only_the_llm_lora_pin(tmp_path, monkeypatch) -> None:
    pins = tmp_path / "lite.json"
    shutil.copyfile(PINS, pins)
    arts = tmp_path / "artifacts"
    arts.mkdir()
    monkeypatch.setattr(promote_mod, "ARTIFACTS", arts)
    adapter = tmp_path / "run" / "adapter.gguf"
    adapter.parent.mkdir()
    adapter.write_bytes(b"GGUF" + bytes(range(200)))
    before = json.loads(pins.read_text())
    digest = promote_mod.promote(adapter, "lite-test-lora.gguf", "evidence", pins=pins)
    after = json.loads(pins.read_text())
    lora = after["components"]["llm_lora"]
    assert lora["sha256"] == digest == sha256_file(arts / "lite-test-lora.gguf")
    assert lora["path"] == "artifacts/lite-test-lora.gguf" and lora["inputs"]["prompt_layout"] == "evidence"
    assert {k: v for k, v in after["components"].items() if k != "llm_lora"} == {
        k: v for k, v in before["components"].items() if k != "llm_lora"
    }
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a GGUF"):
        promote_mod.promote(bad, "x.gguf", "evidence", pins=pins)


def test_training_refuses_to_write_the_shipped_adapter() -> None:
    from affectstream.train.cli import _adapter_out

    shipped = Path(promote_mod.__file__).parent / "artifacts" / "lite-grpo-lora.gguf"
    with pytest.raises(ValueError, match="artifacts"):
        _adapter_out({"export": {"adapter": str(shipped)}}, Path("/tmp/run"))
    assert _adapter_out({"export": {"adapter": "adapter.gguf"}}, Path("/tmp/run")) == "/tmp/run/adapter.gguf"

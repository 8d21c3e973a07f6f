"""Promote a trained GGUF LoRA adapter to the shipped one: copy it into train/artifacts/ and re-pin.

Why a separate, explicit step: training writes only to its run folder; what the `lite` profile ships
(export/pins/lite.json → `llm_lora`, verified by SHA-256 on every load) changes only when someone
decides a run is better, with the eval reports that say so. The pin also records the prompt layout
the adapter was trained with (`inputs.prompt_layout`), because an adapter only works with its layout.

    python -m affectstream.train.promote RUN/adapter.gguf --name lite-evidence-lora.gguf --layout evidence \
        --licence "..."
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from affectstream.engine.hashing import sha256_file
from affectstream.engine.llm.prompt import LAYOUTS

ARTIFACTS = Path(__file__).parent / "artifacts"
PINS = Path(__file__).parent.parent / "export" / "pins" / "lite.json"


def promote(adapter: Path, name: str, layout: str, licence: str | None = None, pins: Path = PINS) -> str:
    """Copy `adapter` to artifacts/`name` and point the `llm_lora` pin at it; returns the SHA-256."""
    if not adapter.is_file():
        raise FileNotFoundError(f"adapter not found: {adapter}")
    if adapter.read_bytes()[:4] != b"GGUF":
        raise ValueError(f"{adapter} is not a GGUF file")
    dest = ARTIFACTS / name
    if adapter.resolve() != dest.resolve():
        shutil.copyfile(adapter, dest)
    digest = sha256_file(dest)
    text = pins.read_text(encoding="utf-8")
    data = json.loads(text)
    comp = data["components"]["llm_lora"]
    comp.update(file=name, path=f"artifacts/{name}", sha256=digest)
    comp["inputs"] = {**comp.get("inputs", {}), "prompt_layout": layout}
    if licence:
        comp["licence"] = licence
    # rewrite only the llm_lora entry's line block, keeping the file's hand formatting elsewhere
    start = text.index('"llm_lora": {')
    end = text.index("\n    }", start) + len("\n    }")
    body = json.dumps(comp, ensure_ascii=False)
    entry = '"llm_lora": {\n      ' + body[1:-1].replace(', "', ',\n      "') + "\n    }"
    pins.write_text(text[:start] + entry + text[end:], encoding="utf-8")
    json.loads(pins.read_text(encoding="utf-8"))  # still valid JSON
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m affectstream.train.promote", description=__doc__.split("\n")[0]
    )
    ap.add_argument("adapter", type=Path)
    ap.add_argument("--name", required=True, help="file name in train/artifacts/")
    ap.add_argument("--layout", choices=LAYOUTS, required=True)
    ap.add_argument("--licence", default=None)
    a = ap.parse_args(argv)
    try:
        d = promote(a.adapter, a.name, a.layout, a.licence)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"llm_lora -> artifacts/{a.name} sha256 {d} (layout {a.layout})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

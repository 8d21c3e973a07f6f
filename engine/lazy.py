"""Lazy package exports (PEP 562), so a package's public names cost nothing until used.

Why: `affectstream.engine`, `.streams`, `.export` and `.train` each re-export the few names a user
imports, but those names live in modules that load ONNX Runtime, OpenCV, torch or aiortc. Importing
them eagerly in `__init__` would make every `import affectstream.engine.types` pay for all of that (and
fail without the optional extras); resolving each name on first access keeps imports cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and a module `__getattr__` that imports `exports[name]` (a module path) on first use."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return [*exports], __getattr__

"""The packages' public names: each resolves, and importing the packages loads nothing heavy."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("affectstream.engine", "affectstream.streams", "affectstream.export", "affectstream.train")
HEAVY = ("torch", "onnxruntime", "cv2", "transformers", "aiortc", "llama_cpp", "ray")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package: str) -> None:
    mod = importlib.import_module(package)
    assert mod.__all__, package
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = mod.no_such_name


def test_importing_the_packages_loads_no_heavy_dependency() -> None:
    code = (
        "import sys\n"
        f"import {', '.join(PACKAGES)}\n"
        "import affectstream.engine.types, affectstream.streams.contract\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "", f"loaded at import: {out.stdout.strip()}"

"""The layering of docs/architecture.md, enforced: import-linter passes on the tree and fails when a
forbidden import is added.

The negative check runs import-linter on a copy of the four packages with one upward import added
(a source importing the CLI). It runs the copy with `python -S` and an explicit path so the editable
install's finder cannot substitute the real tree for the copy.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "streams", "export", "train")

pytest.importorskip("importlinter", reason="import-linter is in the dev extra")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over `tree` (holding affectstream/<pkg>/ and pyproject.toml), isolated from the
    editable install."""
    paths = [str(tree), *site.getsitepackages()]
    code = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = {paths!r}
        from importlinter.cli import lint_imports
        sys.exit(lint_imports(config_filename={str(tree / "pyproject.toml")!r}, no_cache=True))
        """
    )
    return subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tree, capture_output=True, text=True, timeout=300
    )


def _copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(
            ROOT / pkg, dst / "affectstream" / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.onnx")
        )
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_tree(tmp_path_factory.mktemp("arch"))


def test_layers_hold_on_the_tree(tree: Path) -> None:
    r = _lint(tree)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "KEPT" in r.stdout and "BROKEN" not in r.stdout


def test_an_upward_import_breaks_the_contract(tree: Path) -> None:
    windower = tree / "affectstream" / "streams" / "windower.py"
    original = windower.read_text()
    try:
        windower.write_text(original + "\n\ndef _bad():\n    from affectstream.engine.cli import main\n\n    return main\n")
        r = _lint(tree)
    finally:
        windower.write_text(original)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout
    assert "affectstream.streams.windower -> affectstream.engine.cli" in r.stdout


def test_every_subpackage_is_installed() -> None:
    """A sub-package missing from pyproject's explicit list works in an editable install and vanishes
    from a wheel (the container image): catch it here."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        "affectstream." + ".".join(init.parent.relative_to(ROOT).parts)
        for pkg in PACKAGES
        for init in (ROOT / pkg).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"

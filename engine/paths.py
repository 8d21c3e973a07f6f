"""Where affectstream keeps prepared profiles and caches.

`AFFECTSTREAM_HOME` overrides the default (`~/.cache/affectstream`) so containers can point it at a
volume and tests at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("AFFECTSTREAM_HOME", Path.home() / ".cache" / "affectstream")).expanduser()


def profiles_dir() -> Path:
    return home() / "profiles"


def profile_dir(name: str) -> Path:
    return profiles_dir() / name


def wheels_cache() -> Path:
    """Downloaded pinned wheels, kept so re-preparing a profile needs no network."""
    return home() / "wheels"

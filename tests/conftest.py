"""Shared pytest setup. Fixtures live in `tests/fixtures_<area>.py` and are loaded here by name."""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# strict_skips: in CI (CI=true or AFFECTSTREAM_STRICT_SKIPS=1) a skip outside the GPU/CUDA/TensorRT allow-list fails.
pytest_plugins = [*sorted(p.stem for p in TESTS.glob("fixtures_*.py")), "strict_skips"]

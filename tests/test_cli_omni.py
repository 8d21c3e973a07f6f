"""`affectstream run --profile r1-omni --checkpoint DIR` streams window and reasoning results.

The published checkpoint (2.75 GB) is not available offline, so this runs the real loading, splicing
and decoding code on a tiny random checkpoint with the same module names and key layout. The labels
it produces are meaningless; what is checked is the streaming contract.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from affectstream.streams.contract import validate
from media import write_clip

ROOT = Path(__file__).resolve().parents[1]


def test_run_r1_omni_profile_with_tiny_checkpoint(tmp_path: Path) -> None:
    from affectstream.engine.omni.tiny import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    clip = write_clip(tmp_path / "clip.mp4", seconds=3.0, fps=10)
    env = dict(os.environ, AFFECTSTREAM_OMNI__MAX_NEW_TOKENS="12", AFFECTSTREAM_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "affectstream.engine.cli",
            "run",
            f"omni={clip}",
            "--profile",
            "r1-omni",
            "--checkpoint",
            str(ckpt),
            "--no-mqtt",
            "--jsonl",
            "-",
            "--hop",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    windows = [r for r in rows if r["kind"] == "window"]
    reasoning = [r for r in rows if r["kind"] == "reasoning"]
    assert len(windows) >= 1 and len(reasoning) == len(windows)
    for w in windows:
        w.pop("kind")
        validate("window", w)
        assert w["profile"] == "r1-omni" and w["stream"] == "omni"
    for r in reasoning:
        r.pop("kind")
        validate("reasoning", r)
    # each reasoning message names the window it explains
    assert sorted(r["window"]["index"] for r in reasoning) == sorted(w["window"]["index"] for w in windows)
    # the lite profile was never prepared: r1-omni needs nothing but its checkpoint
    assert not (tmp_path / "home" / "profiles" / "lite").exists()

"""Face detection speed: ONNX Runtime vs torch eager (same BlazeFace port, same inputs, same threads).

Prints ms/frame for the network alone at batch 1 and batch 8 (one window's frames in one call), for the
short- and full-range models, plus the whole detector (letterbox + network + decode + NMS) on ORT and
the original .tflite via ai-edge-litert (batch 1 only: the file has a fixed batch) for reference.
Ratios are measured in this run, methods timed alternately (see `_interleaved`). Usage: python bench/bench_face.py [--threads 1] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# torch's OpenMP workers otherwise busy-wait after each call and steal the cores from the method timed
# next in the interleaved loop; PASSIVE makes each method pay only for its own work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _interleaved(fns: dict[str, Callable[[], object]], frames: int, repeat: int) -> dict[str, float]:
    """Median ms/frame per method, timing the methods alternately each round.

    Interleaving matters on a shared machine: load from other processes drifts over seconds, and timing
    one method after the other would credit that drift to whichever ran in the quiet period.
    """
    for fn in fns.values():
        fn()  # warm-up (allocations, ORT graph init)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 / frames for k, v in times.items()}


def _bench_variant(variant: str, prof: Any, frames: list[np.ndarray], threads: int, repeat: int) -> list[str]:
    from affectstream.engine.models.face_detector import ANCHOR_OPTIONS, FaceDetector, letterbox_into
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.engine.runtimes.torch_rt import TorchRuntime
    from affectstream.export.blazeface import load_blazeface

    size = ANCHOR_OPTIONS[variant]["size"]
    x = np.zeros((8, size, size, 3), np.float32)
    for k, f in enumerate(frames):
        letterbox_into(f, x[k])
    ort_rt = OrtRuntime(prof.path(f"face_{variant}"), threads=threads)
    torch_rt = TorchRuntime(
        load_blazeface(prof.path(f"face_{variant}_tflite")), ["input"], ["regressors", "classificators"]
    )
    det = FaceDetector(ort_rt, model=variant, min_face_px=0)
    tfl = None
    try:
        from ai_edge_litert.interpreter import Interpreter

        tfl = Interpreter(model_path=str(prof.path(f"face_{variant}_tflite")), num_threads=threads)
        tfl.allocate_tensors()
    except ImportError:
        pass
    idx = tfl.get_input_details()[0]["index"] if tfl is not None else 0
    for batch in (1, 8):
        xb = x[:batch]
        fns: dict[str, Callable[[], object]] = {
            "ort": lambda xb=xb: ort_rt.run({"input": xb}),
            "torch": lambda xb=xb: torch_rt.run({"input": xb}),
            "detector": lambda b=batch: det.detect_batch(frames[:b]),
        }
        if tfl is not None and batch == 1:

            def run_tfl(xb: np.ndarray = xb) -> None:
                tfl.set_tensor(idx, xb)
                tfl.invoke()

            fns["tflite"] = run_tfl
        t = _interleaved(fns, batch, repeat)
        print(
            f"{variant:6} {batch:5d} {t['ort']:8.2f} {t['torch']:8.2f} {t['torch'] / t['ort']:5.1f}x "
            f"{t.get('tflite', float('nan')):8.2f} {t['detector']:14.2f}"
        )
    return ort_rt.describe().providers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--profile", type=Path, default=None, help="prepared lite profile folder")
    a = ap.parse_args()

    import torch
    from affectstream.engine.profile import Profile
    from affectstream.export.prepare import prepare_profile
    from media import astronaut_bgr, moving_frames

    torch.set_num_threads(a.threads)
    home = Path(os.environ.get("AFFECTSTREAM_HOME", Path.home() / ".cache" / "affectstream-test"))
    root = a.profile or prepare_profile(
        "lite", dest=home / "profiles" / "lite", wheels_dir=home / "wheels", progress=False
    )
    prof = Profile.load(root)
    frames = moving_frames(astronaut_bgr(), 8, size=(640, 480))
    print(
        f"threads={a.threads} repeat={a.repeat} frames 640x480, median ms/frame, load {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'model':6} {'batch':>5} {'ORT':>8} {'torch':>8} {'ratio':>6} {'tflite':>8} {'detector(ORT)':>14}"
    )
    for variant in ("short", "full"):
        providers = _bench_variant(variant, prof, frames, a.threads, a.repeat)
    print("providers:", providers)


if __name__ == "__main__":
    main()

"""Face detection speed: ONNX Runtime vs torch eager (same BlazeFace port, same inputs, same threads).

Prints ms/frame for the network alone at batch 1 and batch 8 (one window's frames in one call), for the
short- and full-range models, plus the whole detector (letterbox + network + decode + NMS) on ORT and
the original .tflite via ai-edge-litert (batch 1 only: the file has a fixed batch) for reference.
Ratios are measured in this run. Usage: python bench/bench_face.py [--threads 1] [--repeat 30]
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


def _ms_per_frame(fn: Callable[[], object], frames: int, repeat: int) -> float:
    fn()  # warm-up (allocations, ORT graph init)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3 / frames


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
    for batch in (1, 8):
        xb = x[:batch]
        t_ort = _ms_per_frame(lambda xb=xb: ort_rt.run({"input": xb}), batch, repeat)
        t_torch = _ms_per_frame(lambda xb=xb: torch_rt.run({"input": xb}), batch, repeat)
        t_det = _ms_per_frame(lambda b=batch: det.detect_batch(frames[:b]), batch, repeat)
        t_tfl = float("nan")
        if tfl is not None and batch == 1:
            idx = tfl.get_input_details()[0]["index"]

            def run_tfl(xb: np.ndarray = xb, idx: int = idx) -> None:
                tfl.set_tensor(idx, xb)
                tfl.invoke()

            t_tfl = _ms_per_frame(run_tfl, 1, repeat)
        print(
            f"{variant:6} {batch:5d} {t_ort:8.2f} {t_torch:8.2f} {t_torch / t_ort:5.1f}x "
            f"{t_tfl:8.2f} {t_det:14.2f}"
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
    print(f"threads={a.threads} repeat={a.repeat} frames 640x480, median ms/frame")
    print(
        f"{'model':6} {'batch':>5} {'ORT':>8} {'torch':>8} {'ratio':>6} {'tflite':>8} {'detector(ORT)':>14}"
    )
    for variant in ("short", "full"):
        providers = _bench_variant(variant, prof, frames, a.threads, a.repeat)
    print("providers:", providers)


if __name__ == "__main__":
    main()

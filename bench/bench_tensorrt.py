"""TensorRT plans vs the ONNX Runtime CPU baseline, measured in the same run.

    python bench/bench_tensorrt.py [--onnx-dir DIR | --profile lite] [--precisions fp32,fp16,int8]
                                   [--calib examples/sample.mp4] [--iters 50]

With TensorRT importable (GPU machines): for every encoder, build each precision (build time),
run the accuracy check on real windows (max |Δ|, argmax agreement vs ORT CPU), and time batched
inference at the profile's opt batch: ORT CPU ms, TensorRT ms, and the speed-up ratio.

Without TensorRT it says so and measures what does run here: the cost of automatic runtime selection
(the fallback chain) vs building an ONNX Runtime CPU session directly, and the per-call overhead of
the selection wrapper — so the chain is shown not to slow the fast path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def timed(fn, iters: int, warmup: int = 5) -> float:
    """Median milliseconds per call."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def interleaved(fa, fb, iters: int) -> tuple[float, float]:
    """Median ms of two functions timed alternately, so CPU contention from other processes hits both."""
    ta, tb = [], []
    for _ in range(5):
        fa(), fb()
    for _ in range(iters):
        for f, ts in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ta), statistics.median(tb)


def onnx_components(args: argparse.Namespace) -> tuple[Path, list[tuple[str, Path]]]:
    from affectstream.export.tensorrt import list_onnx_components

    return list_onnx_components(args.onnx_dir or args.profile)


def feed_for(path: Path, shapes) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, r in shapes.items():
        if "ids" in name:
            out[name] = rng.integers(5, 100, r.opt).astype(np.int64)
        elif "mask" in name:
            out[name] = np.ones(r.opt, np.int64)
        else:
            out[name] = rng.uniform(-1, 1, r.opt).astype(np.float32)
    return out


def bench_gpu(args: argparse.Namespace) -> int:
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.engine.runtimes.tensorrt import TensorRTRuntime
    from affectstream.export.tensorrt import default_shape_profile, export_tensorrt

    _, comps = onnx_components(args)
    out = Path(args.out or tempfile.mkdtemp(prefix="trt-bench-"))
    threads = min(8, os.cpu_count() or 1)
    print(f"plans in {out}; ORT CPU baseline with {threads} threads")
    print(
        f"{'encoder':16} {'prec':5} {'build s':>8} {'batch':>5} {'ORT CPU ms':>10} {'TRT ms':>8} {'ratio':>7}  accuracy"
    )
    failures: list[str] = []
    for prec in args.precisions.split(","):
        results = export_tensorrt(
            args.onnx_dir or args.profile,
            fp16=prec == "fp16",
            int8=prec == "int8",
            calib=Path(args.calib) if prec == "int8" else None,
            check_source=Path(args.calib),
            out=out,
            components=[c for c, _ in comps if c != "vad"],
        )
        for r in results:
            if r.plan is None:
                print(f"{r.component:16} {prec:5} {r.status}: {'; '.join(r.notes)[:160]}")
                if r.status == "failed":
                    failures.append(f"{r.component} {prec}: build failed")
                continue
            if r.accuracy is not None and not r.accuracy.get("passed", True):
                failures.append(f"{r.component} {r.precision}: accuracy check failed")
            path = dict(comps)[r.component]
            shapes = default_shape_profile(path, r.component)
            feed = feed_for(path, shapes)
            ort_rt = OrtRuntime(path, ["CPUExecutionProvider"], threads)
            trt_rt = TensorRTRuntime(r.plan)
            cpu_ms = timed(lambda o=ort_rt, f=feed: o.run(f), max(5, args.iters // 5))
            gpu_ms = timed(lambda t=trt_rt, f=feed: t.run(f), args.iters)
            acc = r.accuracy.get("summary", "") if r.accuracy else "not checked"
            batch = next(iter(feed.values())).shape[0]
            print(
                f"{r.component:16} {r.precision:5} {r.seconds:8.1f} {batch:5d} {cpu_ms:10.2f} {gpu_ms:8.3f} "
                f"{cpu_ms / gpu_ms:6.1f}x  {acc}"
            )
            trt_rt.close()
    for line in failures:
        print(f"bench_tensorrt: FAILED: {line}", file=sys.stderr)
    return 1 if failures else 0


def bench_cpu(args: argparse.Namespace, why: str) -> int:
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.engine.runtimes.select import load_runtime

    print(f"tensorrt: absent ({why}); measuring the selection chain on ONNX Runtime CPU instead")
    _, comps = onnx_components(args)
    path = dict(comps).get("expression") or comps[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        direct_ms, auto_ms = interleaved(
            lambda: OrtRuntime(path, ["CPUExecutionProvider"], 1),
            lambda: load_runtime(path, "auto", threads=1, cache_root=Path(tmp)),
            20,
        )
    print(f"load {path.name}: OrtRuntime direct {direct_ms:.1f} ms, load_runtime(auto) {auto_ms:.1f} ms "
          f"(ratio {auto_ms / direct_ms:.2f}x; includes trying TensorRT and the GPU providers)")  # fmt: skip
    rt_direct = OrtRuntime(path, ["CPUExecutionProvider"], 1)
    rt_sel = load_runtime(path, "cpu", threads=1)
    x = {
        rt_direct.input_names[0]: np.random.default_rng(0).uniform(-1, 1, (16, 1, 64, 64)).astype(np.float32)
    }
    a, b = interleaved(lambda: rt_direct.run(x), lambda: rt_sel.run(x), args.iters * 4)
    print(
        f"run batch 16 (interleaved, medians): direct {a:.3f} ms, via selection wrapper {b:.3f} ms (ratio {b / a:.3f}x)"
    )
    print(f"reasons reported: {load_runtime(path, 'auto', threads=1).describe().fallback_reasons}")
    graphs_cpu(args, comps)
    return 0


def graphs_cpu(args: argparse.Namespace, comps: list[tuple[str, Path]]) -> None:
    """The FP16 / INT8 (Q/DQ) graphs TensorRT would build from: accuracy vs FP32 on real windows of
    --calib and their ONNX Runtime CPU latency vs FP32 (interleaved), at the profile's opt batch."""
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.export import calibration as cal
    from affectstream.export.precision import quantize_int8_qdq, to_fp16_onnx
    from affectstream.export.tensorrt import default_shape_profile, graph_accuracy

    src = Path(args.calib)
    windows = cal.read_windows(src)
    root = {n: p for n, p in comps}
    needs_faces = "expression" in root or "face_mesh" in root
    boxes = cal.profile_face_boxes(next(iter(root.values())).parent) if needs_faces else None
    print(f"reduced-precision graphs on ORT CPU, real windows of {src.name} ({len(windows)} windows)")
    print(
        f"{'encoder':12} {'prec':5} {'batch':>5} {'FP32 ms':>8} {'graph ms':>9} {'ratio':>6}  accuracy vs FP32"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("face_short", "face_full", "face_mesh", "expression"):
            if name not in root:
                continue
            shapes = default_shape_profile(root[name], name)
            inp = next(iter(shapes))
            cs = cal.make_calibration_set(
                name, inp, src, batch_size=shapes[inp].opt[0], face_boxes=boxes, windows=windows
            )
            graphs = {
                "fp16": to_fp16_onnx(root[name], Path(tmp) / f"{name}-fp16.onnx"),
                "int8": quantize_int8_qdq(
                    root[name],
                    list(cs.feeds()),
                    Path(tmp) / f"{name}-int8.onnx",
                    calibration_id=cs.calibration_id,
                ).path,
            }
            fp32 = OrtRuntime(root[name], ["CPUExecutionProvider"], 1)
            feed = cs.batches[0]
            for prec, g in graphs.items():
                acc = graph_accuracy(root[name], g, cs, prec, name)["summary"]
                rt = OrtRuntime(g, ["CPUExecutionProvider"], 1)
                x = {inp: feed}
                a, b = interleaved(lambda f=fp32, x=x: f.run(x), lambda r=rt, x=x: r.run(x), args.iters)
                print(f"{name:12} {prec:5} {len(feed):5d} {a:8.2f} {b:9.2f} {b / a:5.2f}x  {acc}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="lite", help="prepared profile name or folder")
    p.add_argument("--onnx-dir", type=Path, help="folder of .onnx files instead of a profile")
    p.add_argument("--precisions", default="fp32,fp16,int8")
    p.add_argument("--calib", default=str(REPO / "examples" / "sample.mp4"))
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--out", type=Path, help="plan cache folder (default: a temp folder)")
    p.add_argument(
        "--require-tensorrt",
        action="store_true",
        help="exit 1 when TensorRT or its GPU is unusable, instead of measuring the CPU fallback (GPU checks)",
    )
    args = p.parse_args()
    from affectstream.engine.runtimes.base import RuntimeUnavailable
    from affectstream.engine.runtimes.plan_cache import detect_device

    try:
        dev = detect_device()
    except RuntimeUnavailable as e:
        if args.require_tensorrt:
            print(f"bench_tensorrt: FAILED: TensorRT is required but unusable: {e}", file=sys.stderr)
            return 1
        return bench_cpu(args, str(e))
    print(f"device: {dev.name}, sm {dev.compute_capability}, TensorRT {dev.tensorrt_version}")
    return bench_gpu(args)


if __name__ == "__main__":
    sys.exit(main())

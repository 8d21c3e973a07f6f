"""`affectstream export tensorrt PROFILE [--fp16] [--int8 --calib SOURCE]`: build TensorRT plans.

For every ONNX encoder of a prepared profile (or a folder of ONNX files) this:
1. derives an explicit optimisation profile (dynamic batch; sequence axes get their own range) and
   checks the graph with `onnx.checker` plus strict shape inference at the min/opt/max shapes — on any
   machine, before TensorRT is involved, so a graph TensorRT would choke on is caught in CI;
2. computes the plan-cache key (GPU/SoC, compute capability, TensorRT version, precision, shapes,
   ONNX hash, calibration data) and skips the build when a matching intact plan exists; stale or
   foreign plans of that precision are deleted (see `engine/runtimes/plan_cache.py`);
3. prepares the graph for the precision (`export/precision.py`): INT8 = a Q/DQ graph calibrated with
   the entropy method on real windows of SOURCE (the calibrated graph + its scale table are the
   calibration cache, reused while source and data are unchanged); FP16 = builder flags on TensorRT
   < 11, an FP16 graph on strongly typed TensorRT ≥ 11. The reduced graph's own accuracy vs FP32 is
   measured on ONNX Runtime CPU;
4. builds with the TensorRT Python API (per-device timing cache, builder log file) and runs the
   accuracy check (`export/accuracy.py`) of the new plan against ONNX Runtime CPU on real windows,
   recording the figures in the plan's sidecar.

TensorRT is imported lazily: steps 1–3 and all argument handling work without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.hashing import sha256_file
from affectstream.engine.runtimes.base import ModelFileError, RuntimeUnavailable
from affectstream.engine.runtimes.plan_cache import (
    DeviceIdentity,
    PlanCache,
    PlanKey,
    ShapeRange,
    default_cache_root,
    detect_device,
)

log = logging.getLogger("affectstream.export.tensorrt")

# Components not worth a plan, with the reason printed when skipped.
SKIP = {
    "vad": "Silero VAD is a tiny stateful RNN (If/Loop ops); ONNX Runtime CPU already runs it in well under "
    "a millisecond per chunk",
}
# Batch (axis 0) ranges per component: 8 frames × up to 4 streams for detectors, up to 64 faces for FER.
BATCH_RANGES: dict[str, tuple[int, int, int]] = {
    "face_short": (1, 8, 32),
    "face_full": (1, 8, 32),
    "face_mesh": (1, 8, 32),  # face crops: up to 4 faces × 8 frames
    "expression": (1, 16, 64),
}
DEFAULT_BATCH = (1, 8, 32)
DEFAULT_SEQ = (1, 128, 512)  # any other dynamic axis (token/sequence length)
# Per-axis ranges for encoders whose dynamic axes are not all "batch" (r1-omni, export/omni_onnx.py).
AXIS_RANGES: dict[str, dict[int, tuple[int, int, int]]] = {
    "omni_vision": {0: (1, 8, 32)},  # frames: 8 per window × up to 4 streams
    "omni_projector": {0: (1, 1, 4)},  # windows
    "omni_audio": {0: (1, 1, 2), 2: (96, 200, 3000)},  # mel frames: 2 s fast mode … 30 s faithful
    "omni_gate": {0: (1, 1, 4), 1: (1, 64, 512)},  # BERT tokens
}
CALIB_MAX_BATCHES = 16
CALIB_MAX_WINDOWS = 24  # first 24 windows of the clip (~25 s at hop 1 s): bounded decode and memory
CALIB_MAX_SIDE = 1280  # larger frames are downscaled first (encoders see ≤ 192 px or face crops)
LARGE_ONNX = 1_800_000_000  # protobuf's 2 GB limit: check such graphs by path, skip per-shape inference


class BuildError(RuntimeError):
    """A plan could not be built; the message says why and where the builder log is."""


# --------------------------------------------------------------------------- shapes (no TensorRT)
def onnx_input_dims(model: Any) -> dict[str, list[int | str]]:
    """Graph inputs (not initializers) → dims, where a dynamic dim is its name (or '?')."""
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, list[int | str]] = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims: list[int | str] = []
        for d in inp.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or "?")
        out[inp.name] = dims
    return out


def default_shape_profile(
    onnx_path: Path,
    component: str,
    overrides: Mapping[str, ShapeRange] | None = None,
    batch: tuple[int, int, int] | None = None,
) -> dict[str, ShapeRange]:
    """Explicit optimisation profile: axis 0 dynamic → batch range; other dynamic axes → DEFAULT_SEQ."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    b = batch or BATCH_RANGES.get(component, DEFAULT_BATCH)
    prof: dict[str, ShapeRange] = {}
    for name, dims in onnx_input_dims(model).items():
        if overrides and name in overrides:
            prof[name] = overrides[name]
            continue
        lo, mid, hi = [], [], []
        axes = AXIS_RANGES.get(component, {})
        for axis, d in enumerate(dims):
            default = (
                b if axis == 0 and batch is not None else axes.get(axis, b if axis == 0 else DEFAULT_SEQ)
            )
            rng = (d, d, d) if isinstance(d, int) else default
            lo.append(rng[0])
            mid.append(rng[1])
            hi.append(rng[2])
        prof[name] = ShapeRange(tuple(lo), tuple(mid), tuple(hi))
    return prof


@dataclass(slots=True)
class ShapeCheck:
    """Output shapes inferred by ONNX at each profile point (min/opt/max)."""

    outputs: dict[str, dict[str, list[int | str]]] = field(default_factory=dict)  # point → out → dims
    skipped: str = ""
    executed: list[str] = field(default_factory=list)  # points whose shapes needed a real run


RUN_CHECK_LIMIT = 300_000_000  # bytes: bigger graphs are not executed at max shapes on CPU


def _run_at(path: Path, shapes: Mapping[str, tuple[int, ...]], point: str) -> dict[str, list[int | str]]:
    """Run the graph on ONNX Runtime CPU with zero inputs of `shapes`; return the output shapes."""
    import onnxruntime as ort

    if path.stat().st_size > RUN_CHECK_LIMIT:
        raise BuildError(f"{path.name}: output shapes unresolved at {point} and graph too big to execute")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}
    feed = {}
    for i in sess.get_inputs():
        feed[i.name] = np.zeros(shapes[i.name], dtype=types.get(i.type, np.float32))
    try:
        outs = sess.run(None, feed)
    except Exception as e:
        raise BuildError(f"{path.name}: fails to run at {point} shapes {dict(shapes)}: {e}") from e
    return {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), outs, strict=True)}


def check_profile_shapes(onnx_path: Path, profile: Mapping[str, ShapeRange]) -> ShapeCheck:
    """`onnx.checker` + strict shape inference with the inputs fixed to each profile point.

    Raises BuildError if the graph is invalid or inference fails (a graph TensorRT would reject). Output
    dims that static inference cannot settle are settled by running the graph at that point on ONNX
    Runtime CPU (recorded in `executed`), so every reported output shape is concrete.
    """
    import onnx
    from onnx import shape_inference

    path = Path(onnx_path)
    try:
        onnx.checker.check_model(str(path), full_check=False)
    except onnx.checker.ValidationError as e:
        raise BuildError(f"{path.name}: ONNX checker failed: {str(e).splitlines()[0]}") from e
    result = ShapeCheck()
    if path.stat().st_size > LARGE_ONNX:
        result.skipped = "graph over 1.8 GB: per-shape inference skipped (checked by path only)"
        return result
    base = onnx.load(str(path))
    declared = onnx_input_dims(base)
    missing = set(declared) - set(profile)
    if missing:
        raise BuildError(f"{path.name}: profile lacks inputs {sorted(missing)}")
    for name, dims in declared.items():
        rng = profile[name]
        if len(dims) != len(rng.min):
            raise BuildError(f"{path.name}: input {name} has rank {len(dims)}, profile gives {rng.min}")
        for axis, d in enumerate(dims):
            if isinstance(d, int) and not (rng.min[axis] == rng.opt[axis] == rng.max[axis] == d):
                raise BuildError(
                    f"{path.name}: input {name} dim {axis} is fixed at {d} in the graph, "
                    f"profile gives {rng.min[axis]}/{rng.opt[axis]}/{rng.max[axis]}"
                )
    for point in ("min", "opt", "max"):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        for inp in m.graph.input:
            if inp.name not in profile:
                continue
            shape = getattr(profile[inp.name], point)
            dims = inp.type.tensor_type.shape.dim
            if len(dims) != len(shape):
                raise BuildError(f"{path.name}: input {inp.name} has rank {len(dims)}, profile gives {shape}")
            for d, v in zip(dims, shape, strict=True):
                d.Clear()
                d.dim_value = int(v)
        # Forget the exporter's symbolic output/intermediate dims so inference must derive them.
        for o in m.graph.output:
            o.type.tensor_type.ClearField("shape")
        del m.graph.value_info[:]
        try:
            inferred = shape_inference.infer_shapes(m, check_type=True, strict_mode=True, data_prop=True)
        except Exception as e:  # onnx raises InferenceError and a few others
            raise BuildError(f"{path.name}: shape inference failed at {point} shapes: {e}") from e
        outs: dict[str, list[int | str]] = {}
        for o in inferred.graph.output:
            outs[o.name] = [
                int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                for d in o.type.tensor_type.shape.dim
            ]
        if any(not isinstance(d, int) for dims in outs.values() for d in dims):
            # Static inference stops at data-dependent subgraphs (e.g. pads computed by Concat/Slice of
            # constants, which TensorRT constant-folds). Settle it by running the graph at this point.
            outs = _run_at(path, {n: getattr(r, point) for n, r in profile.items()}, point)
            result.executed.append(point)
        result.outputs[point] = outs
    return result


# --------------------------------------------------------------------------- TensorRT build
def _trt_logger(trt: Any, log_path: Path) -> Any:
    """A TensorRT logger that writes every message to the builder log and warnings+ to logging."""

    class FileLogger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self.f = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the build

        def log(self, severity: Any, msg: str) -> None:
            # TensorRT may still log while objects are torn down after close(): never raise from here.
            if not self.f.closed:
                self.f.write(f"{time.strftime('%H:%M:%S')} [{getattr(severity, 'name', severity)}] {msg}\n")
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                log.warning("tensorrt: %s", msg)

        def close(self) -> None:
            self.f.close()

    return FileLogger()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def weakly_typed_builder() -> bool:
    """True for TensorRT < 11, whose builder takes FP16/INT8 flags and picks precision per layer.

    TensorRT 11 is always strongly typed: precision comes from the graph (see export/precision.py).
    False when TensorRT is not importable (the graph route then works for any version).
    """
    try:
        from affectstream.engine.runtimes.tensorrt import import_tensorrt

        return hasattr(import_tensorrt().BuilderFlag, "FP16")
    except RuntimeUnavailable:
        return False


def build_plan_bytes(
    onnx_path: Path,
    *,
    precision: str,
    profile: Mapping[str, ShapeRange],
    log_path: Path,
    timing_cache: Path,
    workspace_bytes: int = 4 << 30,
) -> bytes:
    """Parse the ONNX file and build a serialized plan (TensorRT 8.6, 10.x and 11.x APIs).

    `onnx_path` is already the graph for `precision`: the FP32 export, its FP16 copy (TensorRT ≥ 11)
    or its INT8 Q/DQ copy. On TensorRT < 11 the FP16/INT8 flags are set as well, which lets the
    builder run the remaining layers in FP16 and honour the Q/DQ scales.
    """
    from affectstream.engine.runtimes.tensorrt import import_tensorrt

    trt = import_tensorrt()
    logger = _trt_logger(trt, log_path)
    try:
        builder = trt.Builder(logger)
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # required < 10, gone in 11
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BuildError(f"{onnx_path.name}: TensorRT's ONNX parser failed: {errs} (log: {log_path})")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
        opt = builder.create_optimization_profile()
        for name, rng in profile.items():
            opt.set_shape(name, rng.min, rng.opt, rng.max)
        config.add_optimization_profile(opt)
        if precision in ("fp16", "int8") and hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)
        tc_bytes = timing_cache.read_bytes() if timing_cache.exists() else b""
        cache = config.create_timing_cache(tc_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BuildError(f"{onnx_path.name}: TensorRT build failed (see {log_path})")
        log.info("built %s (%s) in %.1f s", onnx_path.name, precision, time.perf_counter() - t0)
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
        return bytes(memoryview(serialized))
    finally:
        logger.close()


# --------------------------------------------------------------------------- profile-level export
@dataclass(slots=True)
class BuildResult:
    component: str
    precision: str
    status: str  # "built", "cached", "skipped", "failed"
    plan: Path | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None  # plan vs ORT CPU (FP32 graph)
    graph_accuracy: dict[str, Any] | None = None  # reduced-precision ONNX graph vs FP32, both ORT CPU

    def line(self) -> str:
        acc = ""
        if self.accuracy:
            acc += f"; plan vs ORT CPU: {self.accuracy['summary']}"
        if self.graph_accuracy:
            acc += f"; {self.precision} graph vs FP32 (ORT CPU): {self.graph_accuracy['summary']}"
        where = f" → {self.plan}" if self.plan else ""
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.component} {self.precision}: {self.status} in {self.seconds:.1f} s{acc}{where}{extra}"


def precision_from_flags(fp16: bool, int8: bool) -> str:
    return "int8" if int8 else "fp16" if fp16 else "fp32"


def default_check_source() -> Path | None:
    """Real clip for accuracy checks when no --calib is given: $AFFECTSTREAM_SAMPLE or examples/."""
    env = os.environ.get("AFFECTSTREAM_SAMPLE")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parent.parent / "examples" / "sample.mp4")
    return next((p for p in cands if p.is_file()), None)


def export_tensorrt(
    profile: str | Path = "lite",
    *,
    fp16: bool = False,
    int8: bool = False,
    calib: Path | None = None,
    out: Path | None = None,
    components: list[str] | None = None,
    shape_overrides: Mapping[str, Mapping[str, ShapeRange]] | None = None,
    check_source: Path | None = None,
    device: DeviceIdentity | None = None,
    device_index: int = 0,
) -> list[BuildResult]:
    """Build (or reuse) a plan for every ONNX component of `profile`. See the module docstring."""
    from affectstream.export import calibration as cal

    precision = precision_from_flags(fp16, int8)
    if int8 and calib is None:
        raise BuildError("--int8 needs --calib SOURCE: a clip with real faces (and speech) to calibrate on")
    prof_root, onnx_files = list_onnx_components(profile)
    root = Path(out) if out else default_cache_root()
    cache = PlanCache(root)
    device = device or detect_device(device_index)  # raises RuntimeUnavailable with the reason
    logs = root / "logs"
    timing = (
        root
        / "timing"
        / f"{slug(device.name)}-sm{device.compute_capability}-trt{device.tensorrt_version}.cache"
    )
    check_src = Path(calib) if calib else (check_source or default_check_source())
    windows = (
        cal.read_windows(check_src, max_windows=CALIB_MAX_WINDOWS, max_side=CALIB_MAX_SIDE)
        if check_src
        else None
    )
    face_boxes = None

    results: list[BuildResult] = []
    for name, onnx_path in onnx_files:
        if components and name not in components:
            continue
        if name in SKIP and not components:
            results.append(BuildResult(name, precision, "skipped", notes=[SKIP[name]]))
            continue
        t0 = time.perf_counter()
        res = BuildResult(name, precision, "failed")
        comp_precision = precision
        try:
            shapes = default_shape_profile(onnx_path, name, (shape_overrides or {}).get(name))
            check_profile_shapes(onnx_path, shapes)
            input_name = next(iter(shapes))
            calib_set = None
            if int8 and not cal.has_recipe(name):
                comp_precision = res.precision = "fp16"
                res.notes.append("no INT8 calibration recipe for this encoder: built FP16")
            if cal.has_recipe(name) and (int8 or windows is not None):
                if name in ("expression", "face_mesh") and face_boxes is None:
                    face_boxes = cal.profile_face_boxes(prof_root)
                try:
                    calib_set = cal.make_calibration_set(
                        name,
                        input_name,
                        check_src,  # type: ignore[arg-type]
                        batch_size=shapes[input_name].opt[0],
                        max_batches=CALIB_MAX_BATCHES,
                        face_boxes=face_boxes,
                        windows=windows,
                        input_dims=list(shapes[input_name].opt),
                    )
                except cal.CalibrationError as e:
                    if int8:
                        raise
                    res.notes.append(f"accuracy check skipped: {e}")
            int8_here = comp_precision == "int8"
            calib_id = calib_set.calibration_id if int8_here and calib_set else ""
            # Cached under the ONNX file's stem: that is what `load_runtime(path)` looks up.
            key = PlanKey.create(onnx_path.stem, onnx_path, device, comp_precision, shapes, calib_id)
            res.notes += cache.prune(key)
            hit = cache.lookup(key)
            if hit.hit:
                res.status, res.plan = "cached", hit.path
            else:
                graph = precision_graph(name, onnx_path, comp_precision, calib_set, root / "graphs", res)
                data = build_plan_bytes(
                    graph,
                    precision=comp_precision,
                    profile=shapes,
                    log_path=logs / f"{name}-{comp_precision}-{key.digest()}.log",
                    timing_cache=timing,
                )
                extra: dict[str, Any] = {"built_at": time.time(), "onnx": str(onnx_path), "graph": str(graph)}
                if res.graph_accuracy:
                    extra["graph_accuracy"] = res.graph_accuracy
                res.plan = cache.store(key, data, extra)
                res.status = "built"
                if calib_set is not None:
                    res.accuracy = accuracy_check(
                        onnx_path, res.plan, calib_set, comp_precision, device_index, component=name
                    )
                    cache.store(key, data, {**extra, "accuracy": res.accuracy})
        except (RuntimeError, TypeError, cal.CalibrationError, ValueError) as e:
            # BuildError, RuntimeUnavailable and ModelFileError are RuntimeErrors; one component's failure
            # must not lose the other components' results
            res.notes.append(f"{type(e).__name__}: {e}")
        res.seconds = time.perf_counter() - t0
        log.info("%s", res.line())
        results.append(res)
    return results


def precision_graph(
    name: str, onnx_path: Path, precision: str, calib_set: Any, work: Path, res: BuildResult
) -> Path:
    """The ONNX graph TensorRT should parse for `precision` (see export/precision.py).

    INT8 → Q/DQ graph calibrated (entropy) on the real-window batches, reused while source and data are
    unchanged; its own accuracy vs FP32 is measured on ONNX Runtime CPU and recorded. FP16 → the FP32
    graph plus builder flags on TensorRT < 11, an FP16 copy on strongly typed TensorRT ≥ 11.
    """
    from affectstream.export import precision as prec

    if precision == "int8":
        if calib_set is None:
            raise BuildError(f"{name}: INT8 needs calibration batches (--calib SOURCE)")
        q = prec.quantize_int8_qdq(
            onnx_path,
            list(calib_set.feeds()),
            work / f"{name}-int8-{calib_set.calibration_id[:16]}.onnx",
            calibration_id=calib_set.calibration_id,
        )
        res.notes.append(f"INT8 Q/DQ graph {'reused' if q.reused else 'calibrated'} ({q.n_scales} scales)")
        res.graph_accuracy = graph_accuracy(onnx_path, q.path, calib_set, "int8", name)
        return q.path
    if precision == "fp16" and not weakly_typed_builder():
        dst = work / f"{name}-fp16-{sha256_file(onnx_path)[:16]}.onnx"
        if not dst.exists():
            prec.to_fp16_onnx(onnx_path, dst)
        if calib_set is not None:
            res.graph_accuracy = graph_accuracy(onnx_path, dst, calib_set, "fp16", name)
        return dst
    return onnx_path


def graph_accuracy(ref_onnx: Path, onnx_path: Path, calib_set: Any, precision: str, component: str) -> dict:
    """Reduced-precision graph vs the FP32 graph, both on ONNX Runtime CPU (runs on any machine)."""
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.export.accuracy import compare_runtimes

    ref = OrtRuntime(ref_onnx, providers=["CPUExecutionProvider"], threads=None)
    cand = OrtRuntime(onnx_path, providers=["CPUExecutionProvider"], threads=None)
    rep = compare_runtimes(ref, cand, calib_set.feeds(), precision, component=component)
    return _report_dict(rep)


def _report_dict(rep: Any) -> dict[str, Any]:
    d = rep.to_dict()
    d["max_abs_diff"], d["min_agreement"], d["summary"] = rep.max_abs_diff, rep.min_agreement, rep.summary()
    return d


def list_onnx_components(profile: str | Path) -> tuple[Path, list[tuple[str, Path]]]:
    """(folder, [(component, onnx path)]) of a prepared profile (by name or folder, via its manifest,
    hashes verified) or of a plain folder of ONNX files (e.g. `export/omni_onnx.py` output)."""
    from affectstream.engine.manifest import MANIFEST_NAME
    from affectstream.engine.profile import Profile

    p = Path(profile)
    if p.is_dir() and not (p / MANIFEST_NAME).exists():
        files = sorted(p.glob("*.onnx"))
        if not files:
            raise BuildError(f"{p}: no manifest.json and no .onnx files")
        return p, [(f.stem, f) for f in files]
    prof = Profile.load(profile)
    comps = sorted(prof.manifest.components.items())
    return prof.root, [(n, prof.root / c.file) for n, c in comps if c.file.endswith(".onnx")]


def accuracy_check(
    onnx_path: Path,
    plan_path: Path,
    calib_set: Any,
    precision: str,
    device_index: int = 0,
    *,
    component: str = "",
) -> dict[str, Any]:
    """New plan vs ONNX Runtime CPU on the FP32 graph, on the real-window batches (export/accuracy.py)."""
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.engine.runtimes.tensorrt import TensorRTRuntime
    from affectstream.export.accuracy import compare_runtimes

    ref = OrtRuntime(onnx_path, providers=["CPUExecutionProvider"], threads=None)
    eng = TensorRTRuntime(plan_path, device_index=device_index, precision=precision)
    try:
        rep = compare_runtimes(ref, eng, calib_set.feeds(), precision, component=component)
    finally:
        eng.close()
        ref.close()
    return _report_dict(rep)


# --------------------------------------------------------------------------- CLI glue
def main_from_args(args: argparse.Namespace) -> int:
    """Entry for `affectstream export tensorrt`: one line per component; exit 1 if any failed."""
    try:
        results = export_tensorrt(
            args.profile or "lite",
            fp16=bool(args.fp16),
            int8=bool(args.int8),
            calib=Path(args.calib) if args.calib else None,
            out=getattr(args, "out", None),
        )
    except (BuildError, RuntimeUnavailable) as e:
        print(f"affectstream: export tensorrt: {e}", file=sys.stderr)
        return 2
    except ModelFileError as e:  # profile not prepared / damaged: the message names the fix
        print(f"affectstream: export tensorrt: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else: still one line, no traceback
        print(f"affectstream: export tensorrt: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(r.line())
    failed = [r for r in results if r.status == "failed"]
    bad_acc = [r for r in results if r.accuracy is not None and not r.accuracy.get("passed", True)]
    return 1 if failed or bad_acc else 0

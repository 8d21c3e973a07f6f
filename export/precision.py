"""Reduced-precision ONNX graphs for TensorRT: FP16 conversion and INT8 explicit quantization (Q/DQ).

Why graphs and not builder flags: TensorRT deprecated implicit INT8 calibration (the
`IInt8EntropyCalibrator2` + `BuilderFlag.INT8` path) in 10.1 and TensorRT 11 removed it together with
the FP16/INT8 builder flags — networks are strongly typed, so the *ONNX file* must carry the precision.
A Q/DQ graph works on every TensorRT from 8.6 on (and in ONNX Runtime, so its accuracy is measured on
any CPU, before a GPU is involved):

- INT8: ONNX Runtime's static quantizer calibrates activation ranges with the **entropy** method on
  batches of **real windows** (`export/calibration.py`), symmetric int8, per-channel weights — the
  scheme TensorRT executes natively. The quantized graph is the calibration cache: it is stored next to
  a sidecar naming the source graph and calibration data, reused when both match, and a readable table
  of the per-tensor scales is written beside it. Only Conv/Gemm/MatMul are quantized (their inputs
  carry the ranges TensorRT needs; pads filled with -inf in pooling would poison histograms).
- FP16: every float initializer and op converted to float16, graph inputs/outputs kept float32 so the
  runtime interface does not change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.hashing import sha256_file

QDQ_VERSION = 1
INT8_METHODS = ("entropy", "percentile", "minmax")
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]


def toposort(model: Any) -> Any:
    """Re-order nodes topologically (the float16 converter appends input casts at the end)."""
    g = model.graph
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a dangling input near node {rest[0].name!r}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)
    return model


def to_fp16_onnx(src: Path, dst: Path) -> Path:
    """Float16 copy of `src` with float32 graph inputs/outputs; checked by onnx.checker."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    model = toposort(model)
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    return dst


@dataclass(slots=True)
class QdqResult:
    path: Path  # the quantized ONNX graph
    table: Path  # JSON: tensor → int8 scale (the calibration table)
    reused: bool  # True when an existing calibration matched and nothing was recomputed
    n_scales: int


def _sidecar(src: Path, calibration_id: str, method: str) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "qdq_version": QDQ_VERSION,
        "onnx_sha256": sha256_file(src),
        "calibration_id": calibration_id,
        "method": method,
        "onnxruntime": ort.__version__,
    }


def scale_table(qdq_path: Path) -> dict[str, float]:
    """Per-tensor activation scales of a Q/DQ graph (QuantizeLinear inputs → scalar scale)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(qdq_path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    table = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in inits:
            s = inits[n.input[1]]
            if s.size == 1:
                table[n.input[0]] = float(s.reshape(()))
    return table


def quantize_int8_qdq(
    src: Path,
    feeds: list[dict[str, np.ndarray]],
    dst: Path,
    *,
    calibration_id: str,
    method: str = "entropy",
) -> QdqResult:
    """INT8 Q/DQ graph of `src` calibrated on `feeds` (real-window batches); reused when unchanged."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if method not in INT8_METHODS:
        raise ValueError(f"INT8 calibration method must be one of {INT8_METHODS}, got {method!r}")
    src, dst = Path(src), Path(dst)
    meta_path = dst.with_suffix(".json")
    table_path = dst.with_suffix(".scales.json")
    want = _sidecar(src, calibration_id, method)
    if dst.exists() and meta_path.exists() and table_path.exists():
        try:
            if json.loads(meta_path.read_text()) == want:
                return QdqResult(dst, table_path, True, len(json.loads(table_path.read_text())))
        except ValueError:
            pass  # unreadable sidecar: recalibrate
    if not feeds:
        raise ValueError("INT8 calibration needs at least one batch of real windows")

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    calib = {
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "minmax": CalibrationMethod.MinMax,
    }[method]
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".onnx.tmp")
    quantize_static(
        str(src),
        str(tmp),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=calib,
        op_types_to_quantize=QUANTIZED_OPS,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    tmp.replace(dst)
    table = scale_table(dst)
    table_path.write_text(json.dumps(table, indent=1, sort_keys=True))
    meta_path.write_text(json.dumps(want, indent=1, sort_keys=True))
    return QdqResult(dst, table_path, False, len(table))

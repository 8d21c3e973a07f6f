"""affectstream.engine: analysis of windows into results (models, runtimes, fusion, LLM, orchestration, CLI).

The names a user of the library needs, importable from here:

    from affectstream.engine import Pipeline, LiteAnalyzer, Profile, load_settings, Window, WindowResult

They load on first use (PEP 562), so importing any `affectstream.engine.*` module stays cheap and never
pulls in ONNX Runtime, OpenCV or torch by accident.
"""

from __future__ import annotations

from affectstream.engine.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "Settings": "affectstream.engine.config",
    "load_settings": "affectstream.engine.config",
    "EMOTIONS": "affectstream.engine.labels",
    "VideoFrame": "affectstream.engine.types",
    "AudioChunk": "affectstream.engine.types",
    "Window": "affectstream.engine.types",
    "WindowResult": "affectstream.engine.types",
    "ReasoningResult": "affectstream.engine.types",
    "Profile": "affectstream.engine.profile",
    "LiteAnalyzer": "affectstream.engine.lite",
    "OmniAnalyzer": "affectstream.engine.omni.analyzer",
    "Pipeline": "affectstream.engine.pipeline",
}
__all__, __getattr__ = lazy_exports(__name__, _LAZY)

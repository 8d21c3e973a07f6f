"""affectstream.engine: analysis of windows into results (models, runtimes, fusion, LLM, CLI)."""

__version__ = "0.1.0"

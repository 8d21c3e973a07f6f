"""Analysis executors: where the fast path runs (thread, worker processes, Ray). See base.py."""

from affectstream.engine.executor.base import AnalyzerFactory, BatchPlanner, Executor, make_executor

__all__ = ["AnalyzerFactory", "BatchPlanner", "Executor", "make_executor"]

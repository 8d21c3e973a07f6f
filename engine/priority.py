"""Lower the CPU priority of the calling thread: the slow path yields the cores to the fast path.

Why per thread: on a small CPU the reasoning LLM and the Whisper transcript want the same cores as the
fast path, and a label that arrives late is worse than a reasoning or a transcript that does. Linux
applies `setpriority` on a thread id to that thread alone (and threads it starts later inherit it);
elsewhere, or without permission, this is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import threading


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's nice value by `nice` steps (≤ 0: leave it)."""
    if nice <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):  # PermissionError is an OSError
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)

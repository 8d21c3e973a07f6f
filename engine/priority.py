"""Lower the CPU priority of the calling thread: the slow path yields the cores to the fast path.

Why per thread: on a small CPU the reasoning LLM and the Whisper transcript want the same cores as the
fast path, and a label that arrives late is worse than a reasoning or a transcript that does. Linux
applies `setpriority` and `sched_setscheduler` on a thread id to that thread alone (and threads it starts
later inherit both); elsewhere, or without permission, this is a no-op.

Two strengths:
- `nice` steps: the thread still gets a share of a busy core (nice 10 ≈ a tenth of a nice-0 thread),
  and the kernel does not always preempt it at once when a fast-path thread wakes;
- `idle` (Linux `SCHED_IDLE`): the thread runs on cycles no normal thread wants. On the 2-core bench the
  fast path's median with the LLM and Whisper running went from ~+12 ms (nice 10) to ~+3 ms over
  running alone (bench/RESULTS.md). The price: under sustained full load the idle thread nearly stops
  (its reasoning or transcript arrives late or not at all) instead of taking a slice from the labels —
  which is why the reasoning scheduler lifts a generation that has waited too long back to `nice`
  (`leave_idle`, `reasoning.idle_grace_s`).
"""

from __future__ import annotations

import contextlib
import os
import threading


def lower_thread_priority(nice: int, idle: bool = False) -> None:
    """Lower the calling thread: `idle` → SCHED_IDLE (falls back to `nice` where refused);
    else raise its nice value by `nice` steps (≤ 0: leave it)."""
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0 = the calling thread (Linux)
            return
        except (AttributeError, OSError):
            pass
    if nice <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):  # PermissionError is an OSError
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)


def leave_idle(tid: int, nice: int) -> bool:
    """Move thread `tid` from SCHED_IDLE back to the normal policy at `nice` steps below the caller.

    Called from another thread (the event loop) when an idle generation has starved for too long; the
    worker restores SCHED_IDLE itself at its next job. False where Linux refuses or lacks the calls."""
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + max(0, nice)))
    except (AttributeError, OSError):
        return False
    return True

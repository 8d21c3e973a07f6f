"""The body of one analysis worker process (process backend).

Started with `spawn`/`forkserver` (never `fork`: ONNX Runtime's thread pools and the parent's event
loop and threads do not survive a fork), it pins its math libraries to one thread, builds its own
analyzer from the factory once, says `ready`, then answers batches until told to stop or its parent
goes away. Messages are small tuples; frames and audio arrive through shared memory (shm.py).
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

PIN_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def pin_threads(n: int) -> None:
    """One intra-op thread per worker: N workers on N cores must not start N×N math threads."""
    for k in PIN_ENV:
        os.environ[k] = str(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except Exception:  # OpenCV is optional for a custom analyzer
        pass


def _early(analyzer: Any, shm: Any, batch_id: int, descs: list[Any]) -> tuple[Any, ...]:
    """Analyse early frames (frames of coming windows) into the analyzer's frame cache; reply how many
    were new. An analyzer without `prefetch` just acknowledges them."""
    prefetch = getattr(analyzer, "prefetch", None)
    n = 0
    try:
        for d in descs:
            carrier = shm.decode(d)
            if prefetch is not None:
                n += int(prefetch(carrier.stream_id, carrier.frames))
            del carrier  # no views into shared memory past this call
    except Exception as e:
        return ("early-error", batch_id, f"{type(e).__name__}: {e}")
    return ("early", batch_id, n)


def main(requests: Any, replies: Any, factory: Any, threads: int) -> None:
    """Worker loop. `requests`/`replies` are one-way `multiprocessing` connections."""
    pin_threads(threads)
    from affectstream.engine.executor.shm import Attached

    try:
        analyzer = factory()
    except BaseException as e:  # report why, in one line, instead of dying silently
        replies.send(("failed", f"{type(e).__name__}: {e}"))
        return
    replies.send(("ready", os.getpid()))
    shm = Attached()
    try:
        while True:
            try:
                msg = requests.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if msg[0] == "stop":
                return
            if msg[0] == "early":
                replies.send(_early(analyzer, shm, msg[1], msg[2]))
                continue
            _, batch_id, descs = msg
            windows = [shm.decode(d) for d in descs]
            t0 = time.perf_counter()
            try:
                results = analyzer.analyze_batch(windows)
                reply: tuple[Any, ...] = ("result", batch_id, results, time.perf_counter() - t0)
            except Exception as e:
                tb = traceback.format_exc(limit=3)
                reply = ("error", batch_id, f"{type(e).__name__}: {e}", tb)
            del windows  # drop the views into shared memory before the segment is reused
            replies.send(reply)
    finally:
        try:
            analyzer.close()
        finally:
            shm.close()

"""Shared-memory transport of windows to worker processes: frames and audio are copied once into a
shared segment and the worker reads them in place; only a small descriptor is pickled.

Why: a window of 8 frames at 640×480 is 7.4 MB. Pickling it through a pipe costs two copies plus the
pickle framing on both sides, under the GIL of the process that also decodes and publishes; one memcpy
into a segment that is reused window after window does not. Segments come from a bounded pool (one per
window in flight) and are only unlinked at close, so a worker attaches each segment once.

The worker's arrays are views of the segment: the analyzer must not keep images after the call (it
caches only small arrays — boxes and probabilities), because the segment is reused for a later window.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
from affectstream.engine.types import VideoFrame, Window

ALIGN = 64
GRAIN = 1 << 20  # segments are sized in whole MiB so a slightly larger window can reuse one


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(slots=True)
class Segment:
    shm: shared_memory.SharedMemory
    size: int

    @property
    def name(self) -> str:
        return self.shm.name


class SegmentPool:
    """Parent side: reusable shared-memory segments, at most one per window in flight."""

    def __init__(self, prefix: str = "afs") -> None:
        self._free: list[Segment] = []
        self._all: list[Segment] = []
        self.prefix = prefix

    def acquire(self, nbytes: int) -> Segment:
        """A free segment of at least `nbytes` (the smallest that fits), or a new one."""
        fits = [s for s in self._free if s.size >= nbytes]
        if fits:
            seg = min(fits, key=lambda s: s.size)
            self._free.remove(seg)
            return seg
        if self._free and len(self._all) >= 64:  # bounded: replace a too-small free segment
            old = self._free.pop()
            self._all.remove(old)
            _destroy(old)
        size = max(GRAIN, (nbytes + GRAIN - 1) // GRAIN * GRAIN)
        seg = Segment(shared_memory.SharedMemory(create=True, size=size), size)
        self._all.append(seg)
        return seg

    def release(self, seg: Segment) -> None:
        if seg in self._all and seg not in self._free:
            self._free.append(seg)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._all)

    def __len__(self) -> int:
        return len(self._all)

    def close(self) -> None:
        for s in self._all:
            _destroy(s)
        self._all.clear()
        self._free.clear()


def _destroy(seg: Segment) -> None:
    with contextlib.suppress(BufferError):  # a view is still alive somewhere: unlink anyway
        seg.shm.close()
    with contextlib.suppress(FileNotFoundError):
        seg.shm.unlink()


def window_nbytes(w: Window) -> int:
    seen: set[int] = set()
    n = 0
    for f in w.frames:
        if id(f.image) not in seen:
            seen.add(id(f.image))
            n += _align(np.asarray(f.image).nbytes)
    return n + _align(np.asarray(w.audio).nbytes)


def encode(w: Window, seg: Segment) -> dict[str, Any]:
    """Copy `w`'s frames (each distinct image once) and audio into `seg`; return the descriptor."""
    buf = seg.shm.buf
    off = 0
    placed: dict[int, tuple[int, tuple[int, ...], str]] = {}
    frames = []
    for f in w.frames:
        key = id(f.image)
        if key not in placed:
            a = np.ascontiguousarray(f.image)
            np.ndarray(a.shape, a.dtype, buffer=buf, offset=off)[...] = a
            placed[key] = (off, a.shape, a.dtype.str)
            off += _align(a.nbytes)
        o, shape, dt = placed[key]
        frames.append((float(f.ts), int(f.index), o, shape, dt))
    audio = np.ascontiguousarray(w.audio)
    if audio.nbytes:
        np.ndarray(audio.shape, audio.dtype, buffer=buf, offset=off)[...] = audio
    return {
        "stream_id": w.stream_id,
        "index": w.index,
        "start": w.start,
        "end": w.end,
        "sample_rate": w.sample_rate,
        "closed_at": w.closed_at,
        "segment": seg.name,
        "frames": frames,
        "audio": (off, audio.shape, audio.dtype.str),
    }


class Attached:
    """Worker side: segments attached by name, kept open for the worker's life (the pool reuses them)."""

    def __init__(self) -> None:
        self._shm: dict[str, shared_memory.SharedMemory] = {}

    def get(self, name: str) -> shared_memory.SharedMemory:
        shm = self._shm.get(name)
        if shm is None:
            shm = self._shm[name] = shared_memory.SharedMemory(name=name)
        return shm

    def decode(self, d: dict[str, Any]) -> Window:
        """The window a descriptor describes; arrays are views of the shared segment (no copy)."""
        buf = self.get(d["segment"]).buf
        frames = [
            VideoFrame(ts, np.ndarray(shape, np.dtype(dt), buffer=buf, offset=off), idx)
            for ts, idx, off, shape, dt in d["frames"]
        ]
        off, shape, dt = d["audio"]
        audio = np.ndarray(shape, np.dtype(dt), buffer=buf, offset=off)
        return Window(
            d["stream_id"], d["index"], d["start"], d["end"], frames, audio, d["sample_rate"], d["closed_at"]
        )

    def close(self) -> None:
        for shm in self._shm.values():
            with contextlib.suppress(BufferError):
                shm.close()
        self._shm.clear()

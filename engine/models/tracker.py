"""Stable face `track` ids within one stream: greedy IoU matching of boxes frame to frame.

Why so simple: a window holds 8 frames over 2 s and faces move little between them; a Kalman/Re-ID
tracker would cost more than detection itself on a 2-core CPU. Greedy best-IoU-first matching with a
centre-distance fallback (for a face that moved more than its own overlap between sampled frames) keeps
ids stable through pans and zooms; a track unseen for `max_age` seconds is forgotten, and the number of
live tracks is capped so memory stays bounded whatever the input.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Track:
    id: int
    box: np.ndarray  # last x1, y1, x2, y2
    last_seen: float
    hits: int = 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _centre_closeness(a: np.ndarray, b: np.ndarray) -> float:
    """1 when centres coincide, 0 at one face-size apart (size = mean side of the two boxes).

    Default threshold 0.25 (centres within 0.75 face) catches moves too fast for IoU ≥ 0.3 to hold.
    """
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    size = ((a[2] - a[0]) + (a[3] - a[1]) + (b[2] - b[0]) + (b[3] - b[1])) / 4
    if size <= 0:
        return 0.0
    return max(0.0, 1.0 - float(np.linalg.norm(ca - cb)) / size)


class IoUTracker:
    """One per stream. `update(boxes, ts)` returns a track id for each box, in the same order."""

    def __init__(
        self, *, min_iou: float = 0.3, min_closeness: float = 0.25, max_age: float = 2.0, max_tracks: int = 64
    ) -> None:
        self.min_iou = min_iou
        self.min_closeness = min_closeness
        self.max_age = max_age
        self.max_tracks = max_tracks
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: Sequence[np.ndarray], ts: float) -> list[int]:
        """Assign ids to this frame's boxes (frames in time order); unmatched boxes open new tracks."""
        self._expire(ts)
        ids: list[int | None] = [None] * len(boxes)
        boxes = [np.asarray(b, dtype=np.float32)[:4] for b in boxes]
        pairs: list[tuple[float, int, int]] = []
        for tid, t in self.tracks.items():
            for i, b in enumerate(boxes):
                o = iou(t.box, b)
                if o >= self.min_iou:
                    pairs.append((1.0 + o, tid, i))  # IoU matches always outrank centre-only matches
                else:
                    c = _centre_closeness(t.box, b)
                    if c >= self.min_closeness:
                        pairs.append((c, tid, i))
        used: set[int] = set()
        for _, tid, i in sorted(pairs, reverse=True):
            if tid in used or ids[i] is not None:
                continue
            used.add(tid)
            ids[i] = tid
            t = self.tracks[tid]
            t.box, t.last_seen, t.hits = boxes[i], ts, t.hits + 1
        for i, b in enumerate(boxes):
            if ids[i] is None:
                tid = self._next_id
                self._next_id += 1
                self.tracks[tid] = Track(tid, b, ts)
                ids[i] = tid
        self._cap()
        return [int(i) for i in ids if i is not None]

    def _expire(self, ts: float) -> None:
        for tid in [tid for tid, t in self.tracks.items() if ts - t.last_seen > self.max_age]:
            del self.tracks[tid]

    def _cap(self) -> None:
        if len(self.tracks) > self.max_tracks:
            for tid in sorted(self.tracks, key=lambda k: self.tracks[k].last_seen)[: -self.max_tracks]:
                del self.tracks[tid]

    def reset(self) -> None:
        self.tracks.clear()


class TrackerBank:
    """IoU trackers keyed by stream id (ids are per stream); at most `max_streams`, oldest evicted."""

    def __init__(self, max_streams: int = 256, **tracker_options: float) -> None:
        self.max_streams = max_streams
        self.options = tracker_options
        self._trackers: dict[str, IoUTracker] = {}
        self._lock = threading.Lock()  # streams may be analysed from several worker threads

    def get(self, stream_id: str) -> IoUTracker:
        with self._lock:
            t = self._trackers.pop(stream_id, None) or IoUTracker(**self.options)  # type: ignore[arg-type]
            self._trackers[stream_id] = t  # most recently used last
            while len(self._trackers) > self.max_streams:
                del self._trackers[next(iter(self._trackers))]
            return t

    def update(self, stream_id: str, boxes: Sequence[np.ndarray], ts: float) -> list[int]:
        return self.get(stream_id).update(boxes, ts)

    def drop(self, stream_id: str) -> None:
        with self._lock:
            self._trackers.pop(stream_id, None)

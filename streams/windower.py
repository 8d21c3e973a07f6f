"""Per-stream sliding windows: every `hop` s, `length` s of video (N frames) and the matching audio.

Windows lie on a fixed grid of stream time: window k covers [origin + k·hop, origin + k·hop + length).
Frames are chosen by R1-Omni's uniform rule (`humanomni/mm_utils.py::frame_sample`): split the window
into N equal segments and take the frame nearest each segment's midpoint. R1-Omni works on frame
indices of a whole clip; here the same rule is applied on timestamps, which is what it means for a
live stream whose frame rate may wobble. When a window holds fewer than N frames the nearest frame is
repeated (R1-Omni pads short clips with black frames; a repeated real frame carries more signal).

Why this shape:
- Memory is bounded without copying frames: instead of buffering every frame, each open window keeps N
  *candidate* slots (the best frame so far for each midpoint). A frame is kept only while it is a
  candidate, so a 1080p/60 fps stream costs about N·length/hop frame references, not 120 frames.
- Audio is buffered as the chunks the source produced (references, no copies) on an integer sample grid,
  and each window's audio is assembled once into an array of exactly `length·sr` samples, zero-filling
  gaps (counted).
- A window is emitted when every modality seen so far has passed its end, or when one modality is more
  than `max_skew` s ahead of the other (a stalled or offset track must not stall results forever).
- Grid windows with no data at all (before the first item, inside a long gap) are skipped and counted,
  so a jump in timestamps costs O(1), not one empty window per hop.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

import numpy as np
from affectstream.engine.types import SAMPLE_RATE, AudioChunk, MediaItem, VideoFrame, Window

# Audio chunks that start within this many seconds of where the previous one ended are treated as
# contiguous: timestamps from demuxers and device clocks jitter by a few samples.
AUDIO_JITTER_S = 0.010
# A frame interval this many times the typical one (and at least MIN_VIDEO_GAP_S) counts as a gap.
VIDEO_GAP_FACTOR = 4.0
MIN_VIDEO_GAP_S = 0.5
# flush() emits a last partial window only if it adds at least this many hops of new time, so codec
# padding (AAC adds ~50 ms) does not produce a window about almost nothing.
TAIL_MIN_HOPS = 0.5


@dataclass(slots=True)
class WindowerStats:
    """Counters the engine publishes in `stats`; all are cumulative for the stream."""

    windows_emitted: int = 0
    windows_skipped: int = 0  # grid windows holding no data (before the stream, inside long gaps)
    windows_forced: int = 0  # emitted early because one modality lagged more than max_skew
    windows_partial: int = 0  # shorter than `length`, emitted by flush() at end of stream
    frames_in: int = 0
    frames_late: int = 0  # arrived for windows already emitted; dropped
    audio_chunks_in: int = 0
    audio_late_seconds: float = 0.0  # audio for windows already emitted; dropped
    audio_gaps: int = 0
    audio_gap_seconds: float = 0.0  # zero-filled
    audio_overlap_seconds: float = 0.0  # audio that repeated already-seen time; dropped
    video_gaps: int = 0
    resolution_changes: int = 0

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Slots:
    """The best candidate frame for each of the N segment midpoints of one window.

    Frames normally arrive in time order, so a midpoint is settled as soon as a frame passes it: the
    nearest frame is then either that frame or the one just before it. That makes `offer` O(1)
    amortised. Midpoints not yet passed take the latest frame. A frame arriving out of order can only
    improve midpoints already settled, and is compared against those.
    """

    __slots__ = ("best", "dist", "j", "last", "settled", "targets")

    def __init__(self, targets: list[float], settled: list[VideoFrame] | None = None) -> None:
        self.targets = targets
        self.settled = settled  # where settled choices are reported (early analysis), if anywhere
        self.best: list[VideoFrame | None] = [None] * len(targets)
        self.dist = [math.inf] * len(targets)
        self.j = 0  # midpoints [0, j) are settled
        self.last: VideoFrame | None = None  # the latest frame offered

    def offer(self, frame: VideoFrame) -> None:
        ts = frame.ts
        last = self.last
        if last is not None and ts <= last.ts:
            for i in range(self.j):
                d = abs(ts - self.targets[i])
                cur = self.best[i]
                # Ties go to the earlier frame, which keeps the selection monotone in time.
                if d < self.dist[i] or (d == self.dist[i] and cur is not None and ts < cur.ts):
                    self.dist[i] = d
                    self.best[i] = frame
            return
        targets, j, n = self.targets, self.j, len(self.targets)
        while j < n and targets[j] <= ts:
            t = targets[j]
            if last is not None and t - last.ts <= ts - t:
                self.best[j], self.dist[j] = last, t - last.ts
            else:
                self.best[j], self.dist[j] = frame, ts - t
            if self.settled is not None:
                self.settled.append(self.best[j])  # type: ignore[arg-type]
            j += 1
        self.j = j
        self.last = frame

    def frames(self) -> list[VideoFrame]:
        if self.last is None:
            return []
        settled = [f for f in self.best[: self.j] if f is not None]
        return settled + [self.last] * (len(self.targets) - self.j)


def nearest_frames(frames: list[VideoFrame], start: float, end: float, n: int) -> list[VideoFrame]:
    """The midpoint rule on a list of frames: for each of `n` equal segments of [start, end), the frame
    nearest the segment's midpoint (ties to the earlier frame). Frames outside [start, end) are ignored;
    returns [] when none is inside. Used for partial windows and as the reference in tests."""
    inside = sorted((f for f in frames if start <= f.ts < end), key=lambda f: f.ts)
    if not inside:
        return []
    seg = (end - start) / n
    out = []
    for i in range(n):
        t = start + (i + 0.5) * seg
        out.append(min(inside, key=lambda f, t=t: (abs(f.ts - t), f.ts)))
    return out


class Windower:
    """Turns one stream's frames and audio chunks into `Window`s; see the module docstring.

    `push(item)` returns the windows that became complete (usually 0 or 1); `flush()` at end of stream
    returns the remaining ones, the last possibly shorter than `length`. Not thread-safe: one windower
    per stream, fed from one task.
    """

    def __init__(
        self,
        stream_id: str,
        length: float = 2.0,
        hop: float = 1.0,
        n_frames: int = 8,
        *,
        max_skew: float = 1.0,
        origin: float = 0.0,
        sample_rate: int = SAMPLE_RATE,
        track_settled: bool = False,
    ) -> None:
        if not (length > 0 and math.isfinite(length)):
            raise ValueError(f"window length must be > 0 s, got {length}")
        if not (hop > 0 and math.isfinite(hop)):
            raise ValueError(f"window hop must be > 0 s, got {hop}")
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        if max_skew < 0:
            raise ValueError(f"max_skew must be >= 0 s, got {max_skew}")
        self.stream_id = stream_id
        self.length = float(length)
        self.hop = float(hop)
        self.n_frames = int(n_frames)
        self.max_skew = float(max_skew)
        self.origin = float(origin)
        self.sample_rate = int(sample_rate)
        self.stats = WindowerStats()
        self._len_samples = round(self.length * self.sample_rate)
        self._next = 0  # the first window not yet emitted or skipped
        self._slots: dict[int, _Slots] = {}
        self._v_wm: float | None = None  # latest frame timestamp
        self._v_dts: deque[float] = deque(maxlen=15)  # recent frame intervals
        self._v_dt = 0.0  # their median: the typical frame interval (gaps, end of the last frame)
        self._v_shape: tuple[int, ...] | None = None
        self._chunks: deque[tuple[int, np.ndarray]] = deque()  # (start sample, samples), sorted
        self._a_end: int | None = None  # end sample of the latest audio
        self._last_end: float | None = None  # end of the last emitted window
        self._flushed = False
        self._settled: list[VideoFrame] | None = [] if track_settled else None
        self._settled_ts = -math.inf  # newest settled frame already handed out by take_settled()

    # ---- grid -------------------------------------------------------------------------------
    def _start(self, k: int) -> float:
        return self.origin + k * self.hop

    def _end(self, k: int) -> float:
        return self.origin + k * self.hop + self.length

    def _s0(self, k: int) -> int:
        """First audio sample of window k (relative to origin)."""
        return round(k * self.hop * self.sample_rate)

    def _targets(self, start: float, end: float) -> list[float]:
        seg = (end - start) / self.n_frames
        return [start + (i + 0.5) * seg for i in range(self.n_frames)]

    def _windows_containing(self, ts: float) -> range:
        rel = ts - self.origin
        lo = math.floor((rel - self.length) / self.hop) + 1
        hi = math.floor(rel / self.hop)
        # Float rounding can put the estimate one off; the exact test is start <= ts < end.
        while lo > 0 and self._end(lo - 1) > ts:
            lo -= 1
        while self._end(lo) <= ts:
            lo += 1
        while self._start(hi + 1) <= ts:
            hi += 1
        while hi >= lo and self._start(hi) > ts:
            hi -= 1
        return range(max(lo, self._next), hi + 1)

    @property
    def pending(self) -> int:
        """Windows holding candidate frames (bounded by (length + max_skew) / hop + 1)."""
        return len(self._slots)

    @property
    def tracks_settled(self) -> bool:
        """Whether settled frames are recorded for `take_settled` (made with `track_settled=True`)."""
        return self._settled is not None

    def take_settled(self) -> list[VideoFrame]:
        """Frames chosen for good since the last call (with `track_settled=True`), oldest first.

        A midpoint is settled once a later frame passed it, so these frames will be in the coming
        windows as they are: a live engine can analyse them before those windows close (early
        analysis), leaving only the audio and the last frame for the moment of close. Each frame is
        handed out once, although overlapping windows choose it for the same midpoint; a frame that
        arrives out of order and replaces an earlier choice is not handed out (the window's own
        analysis covers it).
        """
        if not self._settled:
            return []
        out = []
        for f in self._settled:
            if f.ts > self._settled_ts:
                out.append(f)
                self._settled_ts = f.ts
        self._settled.clear()
        return out

    # ---- input ------------------------------------------------------------------------------
    def push(self, item: MediaItem) -> list[Window]:
        """Add one frame or audio chunk; return the windows it completed, oldest first."""
        if self._flushed:
            raise RuntimeError(f"windower for stream {self.stream_id!r} was flushed; make a new one")
        if not isinstance(item, (VideoFrame, AudioChunk)):
            raise TypeError(f"expected VideoFrame or AudioChunk, got {type(item).__name__}")
        if not math.isfinite(item.ts):
            raise ValueError(f"stream {self.stream_id!r}: non-finite timestamp {item.ts!r}")
        if isinstance(item, VideoFrame):
            self._push_frame(item)
        else:
            self._push_audio(item)
        return self._emit_ready()

    def _push_frame(self, frame: VideoFrame) -> None:
        st = self.stats
        st.frames_in += 1
        shape = frame.image.shape
        if self._v_shape is not None and shape != self._v_shape:
            st.resolution_changes += 1
        self._v_shape = shape
        ts = frame.ts
        if self._v_wm is not None:
            dt = ts - self._v_wm
            if dt > 0:
                if self._v_dt > 0 and dt > max(MIN_VIDEO_GAP_S, VIDEO_GAP_FACTOR * self._v_dt):
                    st.video_gaps += 1
                elif dt <= 1.0:
                    self._v_dts.append(dt)
                    self._v_dt = sorted(self._v_dts)[len(self._v_dts) // 2]
        ks = self._windows_containing(ts)
        if len(ks) == 0:
            st.frames_late += 1
        for k in ks:
            slots = self._slots.get(k)
            if slots is None:
                slots = self._slots[k] = _Slots(self._targets(self._start(k), self._end(k)), self._settled)
            slots.offer(frame)
        if self._settled is not None and len(self._settled) > 4 * self.n_frames:
            del self._settled[: -self.n_frames]  # nobody is taking them: stay bounded
        if self._v_wm is None or ts > self._v_wm:
            self._v_wm = ts

    def _push_audio(self, chunk: AudioChunk) -> None:
        st = self.stats
        if chunk.sample_rate != self.sample_rate:
            raise ValueError(
                f"stream {self.stream_id!r}: audio at {chunk.sample_rate} Hz, windower expects "
                f"{self.sample_rate} Hz (sources resample)"
            )
        samples = chunk.samples
        if samples.ndim != 1:
            raise ValueError(f"stream {self.stream_id!r}: audio must be mono 1-D, got shape {samples.shape}")
        st.audio_chunks_in += 1
        n = len(samples)
        if n == 0:
            return
        sr = self.sample_rate
        pos = round((chunk.ts - self.origin) * sr)
        if self._a_end is not None:
            delta = pos - self._a_end
            if abs(delta) <= AUDIO_JITTER_S * sr:
                pos = self._a_end
            elif delta > 0:
                st.audio_gaps += 1
                st.audio_gap_seconds += delta / sr
            else:
                cut = -delta
                st.audio_overlap_seconds += min(cut, n) / sr
                if cut >= n:
                    return
                samples, pos, n = samples[cut:], self._a_end, n - cut
        first = self._s0(self._next)
        if pos < first:  # belongs (partly) to windows already emitted
            cut = min(first - pos, n)
            st.audio_late_seconds += cut / sr
            if cut >= n:
                self._a_end = max(self._a_end or 0, pos + n)
                return
            samples, pos, n = samples[cut:], first, n - cut
        if samples.dtype != np.float32:
            samples = samples.astype(np.float32)
        self._chunks.append((pos, samples))
        self._a_end = pos + n if self._a_end is None else max(self._a_end, pos + n)

    # ---- output -----------------------------------------------------------------------------
    def _watermarks(self) -> list[float]:
        wms = []
        if self._v_wm is not None:
            wms.append(self._v_wm)
        if self._a_end is not None:
            wms.append(self.origin + self._a_end / self.sample_rate)
        return wms

    def _closeable_upto(self) -> tuple[int, float]:
        """The last window index that may be emitted now, and the 'normal' threshold (min watermark)."""
        wms = self._watermarks()
        if not wms:
            return self._next - 1, -math.inf
        normal = min(wms)
        limit_t = max(normal, max(wms) - self.max_skew)
        k = math.floor((limit_t - self.origin - self.length) / self.hop)
        while self._end(k + 1) <= limit_t:
            k += 1
        while self._end(k) > limit_t:
            k -= 1
        return k, normal

    def _first_k_with_data(self) -> int | None:
        cands = [k for k in self._slots if k >= self._next]
        best = min(cands) if cands else None
        if self._chunks:
            p0 = self._chunks[0][0]
            t0 = self.origin + p0 / self.sample_rate
            k = max(self._next, math.floor((t0 - self.origin - self.length) / self.hop))
            while self._end(k) <= t0:
                k += 1
            best = k if best is None else min(best, k)
        return best

    def _emit_ready(self) -> list[Window]:
        out: list[Window] = []
        # Fast path (most pushes): the next window cannot close yet.
        v, a = self._v_wm, self._a_end
        if v is None and a is None:
            return out
        at = None if a is None else self.origin + a / self.sample_rate
        lo = v if at is None else at if v is None else min(v, at)
        hi = v if at is None else at if v is None else max(v, at)
        if max(lo, hi - self.max_skew) < self._end(self._next):
            return out
        limit, normal = self._closeable_upto()
        while self._next <= limit:
            kd = self._first_k_with_data()
            if kd is None or kd > limit:
                self.stats.windows_skipped += limit - self._next + 1
                self._advance(limit + 1)
                break
            if kd > self._next:
                self.stats.windows_skipped += kd - self._next
                self._advance(kd)
            k = self._next
            forced = self._end(k) > normal
            w = self._build(k, self._end(k))
            self._advance(k + 1)
            if w is not None:
                if forced:
                    self.stats.windows_forced += 1
                out.append(w)
        return out

    def _advance(self, k: int) -> None:
        """Move past windows < k and release what only they needed."""
        self._next = k
        for old in [j for j in self._slots if j < k]:
            del self._slots[old]
        first = self._s0(k)
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= first:
            self._chunks.popleft()

    def _audio(self, s: int, e: int) -> tuple[np.ndarray, int]:
        """Samples [s, e) on the grid, zero-filled where nothing arrived; also how many were real."""
        if self._a_end is None:
            return np.zeros(0, dtype=np.float32), 0
        out = np.zeros(e - s, dtype=np.float32)
        covered = 0
        for p, a in self._chunks:
            if p >= e:
                break
            lo, hi = max(p, s), min(p + len(a), e)
            if hi > lo:
                out[lo - s : hi - s] = a[lo - p : hi - p]
                covered += hi - lo
        return out, covered

    def _build(self, k: int, end: float) -> Window | None:
        start = self._start(k)
        slots = self._slots.get(k)
        if slots is None:
            frames: list[VideoFrame] = []
        elif end >= self._end(k):
            frames = slots.frames()
        else:  # partial window: re-apply the midpoint rule over [start, end) to the retained candidates
            frames = nearest_frames(
                list({id(f): f for f in slots.frames()}.values()), start, end, self.n_frames
            )
        s0 = self._s0(k)
        n = self._len_samples if end >= self._end(k) else round((end - start) * self.sample_rate)
        audio, covered = self._audio(s0, s0 + n)
        if not frames and covered == 0:
            self.stats.windows_skipped += 1
            return None
        self.stats.windows_emitted += 1
        self._last_end = end
        return Window(
            stream_id=self.stream_id,
            index=k,
            start=start,
            end=end,
            frames=frames,
            audio=audio,
            sample_rate=self.sample_rate,
        )

    def flush(self) -> list[Window]:
        """End of stream: emit every window that still holds data. The last ones end where the data
        ends (shorter than `length`); a window that would add less than half a hop beyond the previous
        one is not emitted, so a 4.0 s (or 4.05 s) clip gives [0,2) [1,3) [2,4) and a 4.5 s clip adds
        [3,4.5)."""
        if self._flushed:
            return []
        self._flushed = True
        out: list[Window] = []
        ends = []
        if self._v_wm is not None:
            ends.append(self._v_wm + self._v_dt)
        if self._a_end is not None:
            ends.append(self.origin + self._a_end / self.sample_rate)
        if not ends:
            return out
        data_end = max(ends)
        while self._start(self._next) < data_end:
            kd = self._first_k_with_data()
            if kd is None:
                break
            if kd > self._next:
                self.stats.windows_skipped += kd - self._next
                self._advance(kd)
                continue
            k = self._next
            end = min(self._end(k), data_end)
            if end > self._end(k) - 0.5 / self.sample_rate:  # float noise on a full window
                end = self._end(k)
            if self._last_end is not None and end - self._last_end < TAIL_MIN_HOPS * self.hop - 1e-9:
                self._advance(k + 1)
                continue
            w = self._build(k, end)
            self._advance(k + 1)
            if w is not None:
                if end < self._end(k):
                    self.stats.windows_partial += 1
                out.append(w)
        self._slots.clear()
        self._chunks.clear()
        return out

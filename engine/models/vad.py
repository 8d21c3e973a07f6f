"""Voice activity with Silero VAD (ONNX, from the `silero-vad==6.2.3` wheel).

Silero is a streaming model: 512-sample chunks at 16 kHz, each prefixed with the previous chunk's last
64 samples, and a recurrent state carried between chunks. A window's audio is run from a fresh state
(windows overlap and may arrive out of order across streams, so a per-window pass is the simple, exact
choice: ~60 chunks for a 2 s window).

Two model files from the same wheel work here:
- `silero_vad.onnx` (streaming: one call per 32 ms chunk; several windows run TOGETHER along the batch
  axis, so N streams cost the same number of calls as one);
- `silero_vad_16k_sequence.onnx` (all chunks of a clip in ONE call, bit-exact with the streaming model
  (tests/test_voice.py) and faster for a window, because the per-chunk Python loop and call overhead
  dominate the streaming model's cost; figures in bench/RESULTS.md, lite perception).

Input is sanitised first (NaN/inf → 0, clip to [-1, 1]) so damaged audio yields "no speech", not a crash.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.runtimes.base import Runtime

SAMPLE_RATE = 16_000
CHUNK = 512  # samples per Silero step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees


@dataclass(slots=True)
class VadResult:
    """Speech probability per 32 ms chunk, and what it means for the window."""

    probs: np.ndarray  # (n_chunks,)
    speech_ratio: float  # fraction of the window inside speech segments
    segments: list[tuple[float, float]] = field(default_factory=list)  # seconds from window start
    bad_samples: int = 0  # NaN/inf samples that were replaced by 0

    @property
    def speech(self) -> bool:
        return len(self.segments) > 0

    @property
    def chunk_s(self) -> float:
        return CHUNK / SAMPLE_RATE


def sanitize_audio(audio: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 mono in [-1, 1], with the count of non-finite samples that were zeroed."""
    a = np.asarray(audio)
    if a.ndim > 1:
        a = a.mean(axis=tuple(range(1, a.ndim))) if a.shape[0] > a.shape[-1] else a.mean(axis=0)
    a = a.astype(np.float32, copy=False).ravel()
    bad = ~np.isfinite(a)
    n_bad = int(bad.sum())
    if n_bad:
        a = np.where(bad, 0.0, a).astype(np.float32)
    return np.clip(a, -1.0, 1.0), n_bad


def segments_from_probs(
    probs: np.ndarray,
    *,
    threshold: float = 0.5,
    neg_threshold: float | None = None,
    min_speech_s: float = 0.1,
    min_silence_s: float = 0.1,
    chunk_s: float = CHUNK / SAMPLE_RATE,
) -> list[tuple[float, float]]:
    """Hysteresis segmentation as in Silero's `get_speech_timestamps` (enter at `threshold`, leave below
    `threshold - 0.15`), dropping blips shorter than `min_speech_s` and bridging gaps under `min_silence_s`."""
    neg = threshold - 0.15 if neg_threshold is None else neg_threshold
    segs: list[list[float]] = []
    start: int | None = None
    for i, p in enumerate(probs):
        if start is None and p >= threshold:
            start = i
        elif start is not None and p < neg:
            segs.append([start * chunk_s, i * chunk_s])
            start = None
    if start is not None:
        segs.append([start * chunk_s, len(probs) * chunk_s])
    merged: list[list[float]] = []
    for s in segs:
        if merged and s[0] - merged[-1][1] < min_silence_s:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [(a, b) for a, b in merged if b - a >= min_speech_s]


class SileroVad:
    """Silero VAD through a `Runtime`: the streaming model (inputs `input`, `state`, `sr`) or the
    sequence model (inputs `input` (T, 576), `h`, `c`; output `speech_probs` (T,))."""

    def __init__(self, runtime: Runtime, *, threshold: float = 0.5) -> None:
        self.runtime = runtime
        self.threshold = float(threshold)
        names = set(runtime.input_names)
        if {"input", "h", "c"} <= names:
            self.mode = "sequence"
        elif {"input", "state", "sr"} <= names:
            self.mode = "streaming"
        else:
            raise ValueError(
                f"not a Silero VAD model: inputs {sorted(names)} (expected input/state/sr or input/h/c)"
            )

    @classmethod
    def from_path(cls, path: str | Path, *, threads: int | None = 1) -> SileroVad:
        from affectstream.engine.runtimes.onnx import OrtRuntime

        return cls(OrtRuntime(path, threads=threads))

    def _probs_sequence(self, a: np.ndarray) -> np.ndarray:
        n = len(a) // CHUNK
        if n == 0:
            return np.zeros(0, np.float32)
        frames = a[: n * CHUNK].reshape(n, CHUNK)
        x = np.empty((n, CONTEXT + CHUNK), np.float32)
        x[0, :CONTEXT] = 0.0
        x[1:, :CONTEXT] = frames[:-1, -CONTEXT:]
        x[:, CONTEXT:] = frames
        h = np.zeros((1, 1, 128), np.float32)
        out = self.runtime.run({"input": x, "h": h, "c": h.copy()})
        return np.asarray(out[self.runtime.output_names[0]], np.float32).reshape(-1)[:n]

    def run_chunks(self, x: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]:
        """Continue a stream: `x` (n, 64 + 512) context-prefixed chunks, `state` from the previous call
        (None = fresh). Returns the n probabilities and the state after the last chunk."""
        n = len(x)
        if n == 0:
            return np.zeros(0, np.float32), state
        if self.mode == "sequence":
            h, c = state if state is not None else (np.zeros((1, 1, 128), np.float32),) * 2
            out = self.runtime.run({"input": x, "h": h, "c": c})
            names = self.runtime.output_names
            probs = np.asarray(out[names[0]], np.float32).reshape(-1)[:n]
            return probs, (out[names[1]], out[names[2]])
        st = state if state is not None else np.zeros((2, 1, 128), np.float32)
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        probs = np.zeros(n, np.float32)
        for t in range(n):
            res = self.runtime.run({"input": x[t : t + 1], "state": st, "sr": sr})
            probs[t] = float(res["output"].reshape(-1)[0])
            st = res["stateN"]
        return probs, st

    def result(self, probs: np.ndarray, n_samples: int, bad: int = 0, offset_s: float = 0.0) -> VadResult:
        """Segments and speech ratio of a clip of `n_samples` whose first chunk starts at `offset_s`."""
        segs = [(s + offset_s, e + offset_s) for s, e in segments_from_probs(probs, threshold=self.threshold)]
        dur = n_samples / SAMPLE_RATE
        ratio = min(1.0, sum(e - s for s, e in segs) / dur) if n_samples else 0.0
        return VadResult(probs=probs, speech_ratio=float(ratio), segments=segs, bad_samples=bad)

    def probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Speech probability per chunk for several (sanitised) clips (streaming model: together along
        the batch axis; sequence model: one call per clip)."""
        if not audios:
            return []
        if self.mode == "sequence":
            return [self._probs_sequence(np.asarray(a, np.float32)) for a in audios]
        n_chunks = [len(a) // CHUNK for a in audios]
        steps = max(n_chunks)
        if steps == 0:
            return [np.zeros(0, np.float32) for _ in audios]
        b = len(audios)
        buf = np.zeros((b, steps * CHUNK), np.float32)
        for i, a in enumerate(audios):
            buf[i, : n_chunks[i] * CHUNK] = a[: n_chunks[i] * CHUNK]
        state = np.zeros((2, b, 128), np.float32)
        ctx = np.zeros((b, CONTEXT), np.float32)
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        out = np.zeros((b, steps), np.float32)
        for t in range(steps):
            x = buf[:, t * CHUNK : (t + 1) * CHUNK]
            res = self.runtime.run({"input": np.concatenate([ctx, x], axis=1), "state": state, "sr": sr})
            out[:, t] = res["output"].reshape(b, -1)[:, 0]
            state = res["stateN"]
            ctx = x[:, -CONTEXT:]
        return [out[i, : n_chunks[i]] for i in range(b)]

    def analyze_batch(self, audios: list[np.ndarray]) -> list[VadResult]:
        """Probabilities, speech segments and speech ratio for each clip."""
        clean = [sanitize_audio(a) for a in audios]
        probs = self.probs_batch([c[0] for c in clean])
        return [self.result(p, len(a), bad) for (a, bad), p in zip(clean, probs, strict=True)]

    def analyze(self, audio: np.ndarray) -> VadResult:
        return self.analyze_batch([audio])[0]


@dataclass(slots=True)
class _Lane:
    origin: int  # absolute sample index of chunk 0 of this stream's grid
    next_chunk: int = 0  # first chunk not yet run
    state: Any = None
    ctx: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    probs: collections.OrderedDict[int, float] = field(default_factory=collections.OrderedDict)
    sums: dict[int, float] = field(default_factory=dict)  # per-chunk sum |x|: detects re-used timestamps


class StreamVad:
    """Silero run once per stream over time, not once per window.

    Overlapping windows (hop < length) share audio; each stream keeps Silero's recurrent state and the
    probabilities of the chunks it already ran on a fixed 32 ms grid, so a window only runs its NEW
    chunks — at length/hop = 2 that halves the VAD cost, and the model sees continuous audio as in true
    streaming (no cold start at every window). A gap resets the stream's state; a window older than
    what is kept falls back to a standalone pass. Bounded: `keep_chunks` per stream, `max_streams`.
    """

    def __init__(self, vad: SileroVad, *, keep_chunks: int = 1024, max_streams: int = 256) -> None:
        self.vad = vad
        self.keep_chunks = int(keep_chunks)
        self.max_streams = int(max_streams)
        self._lanes: collections.OrderedDict[str, _Lane] = collections.OrderedDict()
        self.chunks_run = 0
        self.chunks_reused = 0
        self.standalone = 0
        self.resets = 0

    def analyze(self, stream_id: str, start_s: float, audio: np.ndarray) -> VadResult:
        a, bad = sanitize_audio(audio)
        start = round(start_s * SAMPLE_RATE)
        lane = self._lanes.pop(stream_id, None)
        if lane is None:
            lane = _Lane(origin=start)
        self._lanes[stream_id] = lane
        while len(self._lanes) > self.max_streams:
            self._lanes.popitem(last=False)
        k0 = math.ceil((start - lane.origin) / CHUNK)
        k1 = (start + len(a) - lane.origin) // CHUNK  # exclusive
        if k0 < 0 or k1 <= k0:
            return self._standalone(a, bad)
        if lane.next_chunk < k0:  # a gap (or the first window): restart the stream's state here
            lane.next_chunk, lane.state = k0, None
            lane.ctx = np.zeros(CONTEXT, np.float32)
        old = range(k0, min(k1, lane.next_chunk))
        if any(k not in lane.probs for k in old):  # evicted (very old window): don't rewind the lane
            return self._standalone(a, bad)
        if len(old) and not self._same_audio(lane, old, a, start):
            # the same stream times now carry different audio (a reconnect restarted the clock):
            # forget this stream's history and start over at this window
            lane = self._lanes[stream_id] = _Lane(origin=start)
            k0, k1 = 0, len(a) // CHUNK
            old = range(0)
            self.resets += 1
        if k1 > lane.next_chunk:
            ks = np.arange(lane.next_chunk, k1)
            offs = lane.origin + ks * CHUNK - start
            frames = np.stack([a[o : o + CHUNK] for o in offs])
            x = np.empty((len(ks), CONTEXT + CHUNK), np.float32)
            x[0, :CONTEXT] = lane.ctx
            x[1:, :CONTEXT] = frames[:-1, -CONTEXT:]
            x[:, CONTEXT:] = frames
            probs, lane.state = self.vad.run_chunks(x, lane.state)
            lane.ctx = frames[-1, -CONTEXT:].copy()
            sums = np.abs(frames).sum(axis=1)
            for k, p, sm in zip(ks.tolist(), probs.tolist(), sums.tolist(), strict=True):
                lane.probs[k] = p
                lane.sums[k] = sm
            while len(lane.probs) > self.keep_chunks:
                k_old, _ = lane.probs.popitem(last=False)
                lane.sums.pop(k_old, None)
            self.chunks_run += len(ks)
            lane.next_chunk = k1
        self.chunks_reused += len(old)
        p = np.array([lane.probs[k] for k in range(k0, k1)], np.float32)
        offset = (lane.origin + k0 * CHUNK - start) / SAMPLE_RATE
        return self.vad.result(p, len(a), bad, offset_s=offset)

    @staticmethod
    def _same_audio(lane: _Lane, old: range, a: np.ndarray, start: int) -> bool:
        ks = np.fromiter(old, int)
        offs = lane.origin + ks * CHUNK - start
        got = np.abs(np.stack([a[o : o + CHUNK] for o in offs])).sum(axis=1)
        want = np.array([lane.sums[k] for k in old])
        return bool(np.allclose(got, want, rtol=1e-4, atol=1e-3))

    def _standalone(self, a: np.ndarray, bad: int) -> VadResult:
        self.standalone += 1
        r = self.vad.analyze_batch([a])[0]
        r.bad_samples = bad
        return r

    def drop(self, stream_id: str) -> None:
        self._lanes.pop(stream_id, None)

    def stats(self) -> dict[str, int]:
        return {
            "streams": len(self._lanes),
            "chunks_run": self.chunks_run,
            "chunks_reused": self.chunks_reused,
            "standalone": self.standalone,
            "resets": self.resets,
        }

"""Optional transcript with Whisper-base (CTranslate2, via faster-whisper), kept off the fast path.

Whisper costs a sizeable fraction of real time on a small CPU — too much to put in front of every window. So
`Transcriber` runs in one background thread fed by a bounded queue (drop-oldest, counted), at most one
request per stream every `min_interval_s`; the analyzer attaches the latest finished transcript of a
stream to the next window it publishes. `transcribe()` is the synchronous call used by that thread
(and by tests).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.priority import lower_thread_priority
from affectstream.engine.runtimes.base import ModelFileError, RuntimeUnavailable

log = logging.getLogger("affectstream.transcript")

REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(slots=True)
class Transcript:
    stream_id: str
    window_index: int
    text: str
    latency_ms: float
    ts: float


class SpeechBuffer:
    """The last `seconds` of a stream's audio without the overlaps between windows.

    Whisper needs context (a 2 s window cuts words and sentences), so the analyzer appends only the
    part of each window it has not seen and submits the recent stretch. Bounded by `seconds`.
    """

    def __init__(self, seconds: float = 10.0, sample_rate: int = 16_000) -> None:
        self.max_samples = int(seconds * sample_rate)
        self.sr = sample_rate
        self._end: int | None = None  # absolute end sample of what we hold
        self._parts: collections.deque[np.ndarray] = collections.deque()
        self._n = 0

    def add(self, start_s: float, audio: np.ndarray) -> None:
        start = round(start_s * self.sr)
        end = start + len(audio)
        if self._end is None or start > self._end or end < self._end - self.max_samples:
            self._parts.clear()  # first window, a gap, or a restarted clock: start over
            self._n, new = 0, audio
        elif end <= self._end:
            return
        else:
            new = audio[self._end - start :]
        self._parts.append(np.asarray(new, np.float32))
        self._n += len(new)
        self._end = end
        while self._n - len(self._parts[0]) >= self.max_samples:
            self._n -= len(self._parts.popleft())

    def audio(self) -> np.ndarray:
        if not self._parts:
            return np.zeros(0, np.float32)
        return np.concatenate(list(self._parts))[-self.max_samples :]


class Transcriber:
    """Rate-limited background Whisper transcription, one thread, bounded queue."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        threads: int = 1,
        min_interval_s: float = 5.0,
        max_queue: int = 4,
        language: str | None = "en",
        start: bool = True,
        nice: int = 0,
        idle: bool = False,
    ) -> None:
        """`nice`: how much lower the transcript thread's CPU priority is (Linux); `idle`: SCHED_IDLE
        instead (engine/priority.py). With `start`, the model is loaded inside that thread, so
        CTranslate2's worker threads (created at load) inherit the lower priority too; a load error is
        raised here all the same."""
        model_dir = Path(model_dir)
        missing = [f for f in REQUIRED_FILES if not (model_dir / f).is_file()]
        if missing:
            raise ModelFileError(
                f"whisper model folder {model_dir} lacks {', '.join(missing)}; run `affectstream models prepare lite`"
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise RuntimeUnavailable(
                f"faster-whisper not installed ({e}); pip install 'affectstream[transcript]'"
            ) from e
        self._load = lambda: WhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=int(threads)
        )
        self.model: Any = None if start else self._load()
        self.nice = int(nice)
        self.idle = bool(idle)
        self.language = language
        self.min_interval_s = float(min_interval_s)
        self._queue: collections.deque[tuple[str, int, np.ndarray]] = collections.deque(maxlen=max_queue)
        self._latest: dict[str, Transcript] = {}
        self._last_submit: dict[str, float] = {}
        self._cv = threading.Condition()
        self._stop = False
        self.dropped = 0
        self.done = 0
        self._thread: threading.Thread | None = None
        if start:
            self._loaded = threading.Event()
            self._load_error: Exception | None = None
            self._thread = threading.Thread(target=self._run, name="transcriber", daemon=True)
            self._thread.start()
            self._loaded.wait()
            if self._load_error is not None:
                self._thread.join()
                self._thread = None
                err = self._load_error
                raise ModelFileError(f"whisper model in {model_dir} failed to load: {err}") from err

    def _run(self) -> None:
        """The transcript thread: lower its priority, load the model here, then serve the queue."""
        lower_thread_priority(self.nice, self.idle)
        try:
            self.model = self._load()
        except Exception as e:  # raised by __init__, which waits for this
            self._load_error = e
        self._loaded.set()
        if self._load_error is None:
            self._loop()

    def transcribe(self, audio: np.ndarray) -> str:
        """Transcribe 16 kHz mono float32 audio (greedy, VAD-free: the caller already knows it is speech)."""
        a = np.nan_to_num(np.asarray(audio, dtype=np.float32).ravel(), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size < 1600:  # < 0.1 s
            return ""
        segments, _ = self.model.transcribe(
            np.clip(a, -1, 1), language=self.language, beam_size=1, condition_on_previous_text=False
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def submit(self, stream_id: str, window_index: int, audio: np.ndarray) -> bool:
        """Queue a window's audio unless this stream was submitted less than `min_interval_s` ago."""
        now = time.monotonic()
        with self._cv:
            if now - self._last_submit.get(stream_id, -1e9) < self.min_interval_s:
                return False
            self._last_submit[stream_id] = now
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append((stream_id, window_index, np.array(audio, dtype=np.float32)))
            self._cv.notify()
        return True

    def latest(self, stream_id: str) -> Transcript | None:
        with self._cv:
            return self._latest.get(stream_id)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                stream_id, index, audio = self._queue.popleft()
            t0 = time.perf_counter()
            try:
                text = self.transcribe(audio)
            except Exception as e:  # a failed transcript must never take the engine down
                log.warning("transcript failed for %s window %d: %s", stream_id, index, e)
                continue
            tr = Transcript(stream_id, index, text, (time.perf_counter() - t0) * 1000, time.time())
            with self._cv:
                self._latest[stream_id] = tr
                self.done += 1
                self._cv.notify_all()

    def wait_for(self, stream_id: str, window_index: int, timeout: float = 30.0) -> Transcript | None:
        """Block until a transcript of `window_index` (or later) exists for the stream (tests, CLI)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                tr = self._latest.get(stream_id)
                if tr is not None and tr.window_index >= window_index:
                    return tr
                left = deadline - time.monotonic()
                if left <= 0:
                    return tr
                self._cv.wait(left)

    def stats(self) -> dict[str, int]:
        with self._cv:
            return {"done": self.done, "dropped": self.dropped, "queued": len(self._queue)}

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            # wait for the request in flight: a CTranslate2 call cut off by interpreter exit aborts the
            # whole process ("terminate called without an active exception")
            self._thread.join(timeout=60)
            self._thread = None

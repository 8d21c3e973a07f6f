"""A microphone (`mic`, `mic:N`) through pyaudio (PortAudio), 16 kHz mono, read in a thread.

Timestamps count samples (sample clock), not wall time: the windower then cuts audio windows of exactly
`length·16000` samples with no drift. A device that cannot record at 16 kHz is opened at its own rate
and resampled with `av.AudioResampler`. pyaudio is an optional extra (`affectstream[mic]`, needs
`apt-get install portaudio19-dev` to build); without it `mic` fails with one line saying so.

A real device blocks in `read` at its own rate. A virtual one (an ALSA `file` PCM, a loopback) can
deliver far faster than real time; the source then paces itself to the wall clock (never more than
`MAX_LEAD_S` ahead), so it behaves like a microphone instead of flooding the engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
from affectstream.engine.types import SAMPLE_RATE, AudioChunk
from affectstream.streams.sources.base import SourceError, ThreadedSource
from affectstream.streams.sources.feed import Emitter

log = logging.getLogger("affectstream.streams.sources")

MAX_LEAD_S = 0.5


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_stderr(what: str) -> Iterator[None]:
    """Silence what PortAudio's backends (ALSA, JACK, OSS) print on file descriptor 2 while probing.

    Probing every host API prints dozens of lines of ALSA/JACK complaints about devices that do not
    exist, burying our own one-line message. The C libraries write to fd 2 directly, so Python's
    `sys.stderr` cannot catch it: fd 2 is pointed at a temporary file for the probe and what it caught
    is logged at debug level (`-vv`), never lost.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            noise = sink.read().decode(errors="replace").strip()
            if noise:
                log.debug("%s: audio library output while probing:\n%s", what, noise)


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as e:
        raise SourceError(
            "mic: pyaudio is not installed (apt-get install portaudio19-dev; pip install 'affectstream[mic]')"
        ) from e
    return pyaudio


class MicSource(ThreadedSource):
    """Audio from an input device: `device=None` is the system default, an int is a PortAudio index."""

    live = True

    def __init__(
        self,
        device: int | None,
        stream_id: str,
        *,
        chunk_seconds: float = 0.1,
        max_retries: int = 3,
        backoff: float = 0.5,
        queue_size: int = 8,
    ) -> None:
        super().__init__(stream_id)
        self.device = device
        self.what = "mic" if device is None else f"mic:{device}"
        self.chunk_seconds = chunk_seconds
        self.max_retries = max_retries
        self.backoff = backoff
        self.queue_size = queue_size
        self.rate: int | None = None  # the rate the device was opened at

    def _device_info(self, pa: Any) -> dict[str, Any]:
        try:
            if self.device is None:
                info = pa.get_default_input_device_info()
            else:
                if not 0 <= self.device < pa.get_device_count():
                    raise SourceError(
                        f"{self.what}: no such audio device (PortAudio sees {pa.get_device_count()})"
                    )
                info = pa.get_device_info_by_index(self.device)
        except OSError as e:
            raise SourceError(f"{self.what}: no audio input device available (no sound card?)") from e
        if int(info.get("maxInputChannels", 0)) < 1:
            raise SourceError(f"{self.what}: device {info.get('name')!r} has no input channels")
        return info

    def _open(self, pa: Any, pyaudio: Any, info: dict[str, Any]) -> tuple[Any, int]:
        """Open at 16 kHz if the device allows it, else at its default rate (resampled later)."""
        index = int(info["index"])
        rates = [SAMPLE_RATE, int(info.get("defaultSampleRate") or 48000)]
        last: Exception | None = None
        for rate in dict.fromkeys(rates):
            try:
                stream = pa.open(
                    format=pyaudio.paInt16,
                    channels=1,
                    rate=rate,
                    input=True,
                    input_device_index=index,
                    frames_per_buffer=max(1, round(rate * self.chunk_seconds)),
                )
                return stream, rate
            except (OSError, ValueError) as e:
                last = e
        raise SourceError(f"{self.what}: cannot open {info.get('name')!r} for recording ({last})")

    def _produce(self, emit: Emitter) -> None:
        pyaudio = _pyaudio()
        with quiet_stderr(self.what):
            pa = pyaudio.PyAudio()
        stream = None
        try:
            with quiet_stderr(self.what):
                info = self._device_info(pa)
                stream, rate = self._open(pa, pyaudio, info)
            self.rate = rate
            resampler = None
            if rate != SAMPLE_RATE:
                import av

                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            n = max(1, round(rate * self.chunk_seconds))
            produced = 0  # samples at 16 kHz: the sample clock
            failures = 0
            t0 = time.monotonic()
            while not emit.stopped:
                try:
                    data = stream.read(n, exception_on_overflow=False)
                except OSError as e:
                    failures += 1
                    self.stats.errors += 1
                    if failures > self.max_retries:
                        raise SourceError(f"{self.what}: recording failed ({e})") from e
                    log.warning("%s: read failed (%s); reopening", self.what, e)
                    stream.close()
                    stream = None
                    if emit.wait(self.backoff * 2 ** (failures - 1)):
                        return
                    stream, rate = self._open(pa, pyaudio, info)
                    self.stats.reconnects += 1
                    continue
                failures = 0
                pcm = np.frombuffer(data, dtype="<i2")
                if resampler is not None:
                    samples = self._resample(resampler, pcm, rate)
                else:
                    samples = pcm.astype(np.float32) / 32768.0
                if samples.size == 0:
                    continue
                emit(AudioChunk(produced / SAMPLE_RATE, samples, SAMPLE_RATE))
                produced += samples.size
                self.stats.audio_chunks += 1
                self.stats.audio_seconds = produced / SAMPLE_RATE
                lead = produced / SAMPLE_RATE - (time.monotonic() - t0)
                if lead > MAX_LEAD_S and emit.wait(lead - MAX_LEAD_S):
                    return
        finally:
            if stream is not None:
                stream.close()
            pa.terminate()

    @staticmethod
    def _resample(resampler: Any, pcm: np.ndarray, rate: int) -> np.ndarray:
        import av

        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

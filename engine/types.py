"""The data that flows through affectstream, as small dataclasses.

Sources produce `VideoFrame`/`AudioChunk`; the windower groups them into `Window`; analyzers turn a
window into a `WindowResult` (fast path) and, later, a `ReasoningResult` (slow path). The JSON form of
each result is the MQTT payload (see `streams/schemas/`), so field names here are a public contract.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(slots=True)
class VideoFrame:
    """One decoded frame. `ts` is seconds on the stream's own clock (pts), not wall time."""

    ts: float
    image: np.ndarray  # H x W x 3, uint8, BGR (OpenCV order)
    index: int = 0  # monotonically increasing per stream; keys the per-frame feature cache


@dataclass(slots=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at 16 kHz starting at stream time `ts`."""

    ts: float
    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.ts + len(self.samples) / self.sample_rate


MediaItem = VideoFrame | AudioChunk


@dataclass(slots=True)
class WindowRef:
    """Which slice of a stream a result talks about."""

    index: int
    start: float
    end: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(slots=True)
class Window:
    """`length` seconds of one stream: N frames sampled at segment midpoints plus the matching audio."""

    stream_id: str
    index: int
    start: float
    end: float
    frames: list[VideoFrame]
    audio: np.ndarray  # float32 mono, may be empty for video-only streams
    sample_rate: int = SAMPLE_RATE
    closed_at: float = field(default_factory=time.monotonic)  # when the windower emitted it

    @property
    def ref(self) -> WindowRef:
        return WindowRef(self.index, self.start, self.end)

    @property
    def has_video(self) -> bool:
        return len(self.frames) > 0

    @property
    def has_audio(self) -> bool:
        return self.audio.size > 0


@dataclass(slots=True)
class FaceResult:
    track: int
    box: tuple[int, int, int, int]  # pixels, x1 y1 x2 y2
    label: str
    score: float
    scores: dict[str, float]
    actions: dict[str, float] | None = None  # facial actions (smile, mouth_open, ...) when measured

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "track": self.track,
            "box": [int(v) for v in self.box],
            "label": self.label,
            "score": round(float(self.score), 4),
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
        }
        if self.actions is not None:
            d["actions"] = {k: round(float(v), 4) for k, v in self.actions.items()}
        return d


@dataclass(slots=True)
class VoiceResult:
    speech: bool
    speech_ratio: float
    pitch_hz: float | None = None
    pitch_std_hz: float | None = None
    energy_db: float | None = None
    speaking_rate: float | None = None  # syllable-like energy peaks per second of speech
    pause_ratio: float | None = None
    arousal: float | None = None  # 0 calm .. 1 agitated, from prosody
    transcript: str | None = None
    # 7-class probabilities from the trained speech-emotion head (calibrated), or None when the window
    # had no speech or the profile ships no voice model; keys are `labels.EMOTIONS`
    scores: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 3)

        return {
            "speech": bool(self.speech),
            "speech_ratio": round(float(self.speech_ratio), 3),
            "pitch_hz": r(self.pitch_hz),
            "pitch_std_hz": r(self.pitch_std_hz),
            "energy_db": r(self.energy_db),
            "speaking_rate": r(self.speaking_rate),
            "pause_ratio": r(self.pause_ratio),
            "arousal": r(self.arousal),
            "transcript": self.transcript,
            "scores": None if self.scores is None else {k: round(float(v), 4) for k, v in self.scores.items()},
        }


@dataclass(slots=True)
class WindowResult:
    """The fast-path answer for one window; `to_payload()` is the MQTT `window` message."""

    stream: str
    window: WindowRef
    label: str
    score: float
    scores: dict[str, float]
    faces: list[FaceResult] = field(default_factory=list)
    voice: VoiceResult | None = None
    modalities: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    profile: str = "lite"
    ts: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)  # profile-specific fields, added freely

    def to_payload(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": "affectstream.window/1",
            "stream": self.stream,
            "ts": round(self.ts, 3),
            "profile": self.profile,
            "window": self.window.to_dict(),
            "label": self.label,
            "score": round(float(self.score), 4),
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
            "faces": [f.to_dict() for f in self.faces],
            "voice": self.voice.to_dict() if self.voice is not None else None,
            "modalities": {k: round(float(v), 3) for k, v in self.modalities.items()},
            "latency_ms": {k: round(float(v), 2) for k, v in self.latency_ms.items()},
        }
        d.update(self.extra)
        return d


@dataclass(slots=True)
class ReasoningResult:
    """The slow-path answer: the LLM's `<think>` text and validated `<answer>` for a window."""

    stream: str
    window: WindowRef
    think: str
    answer: str | None
    valid: bool
    model: str
    latency_ms: float
    profile: str = "lite"
    fallback_label: str | None = None  # the fast label that stands when `valid` is false
    ts: float = field(default_factory=time.time)
    evidence: list[str] = field(default_factory=list)  # modalities the think cites (face/voice/words)
    agrees_with_fast_label: bool | None = None  # answer == fast label; None when the answer is invalid

    def to_payload(self) -> dict[str, Any]:
        return {
            "schema": "affectstream.reasoning/1",
            "stream": self.stream,
            "ts": round(self.ts, 3),
            "profile": self.profile,
            "window": self.window.to_dict(),
            "think": self.think,
            "answer": self.answer,
            "valid": bool(self.valid),
            "fallback_label": self.fallback_label,
            "evidence": list(self.evidence),
            "agrees_with_fast_label": self.agrees_with_fast_label,
            "model": self.model,
            "latency_ms": round(float(self.latency_ms), 1),
        }

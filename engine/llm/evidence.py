"""What the reasoning LLM may know about one window: faces, voice, words — detached from media.

Why its own module: the prompt renders evidence, the grounding rules weigh it, and the prompt's
`ranked` layout orders its lines by those weights; with the dataclass here both depend on it and
not on each other (prompt → grounding → evidence, no cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from affectstream.engine.types import WindowResult

TOP_EXPRESSIONS = 3  # per face: enough to show ambiguity, few enough to keep prefill short


@dataclass(slots=True)
class FaceCue:
    """One tracked face: its top expression scores (descending) and facial actions if measured."""

    track: int
    expressions: list[tuple[str, float]]
    actions: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Evidence:
    """Everything the LLM may reason from for one window, detached from frames and audio.

    Built from a `WindowResult` (live) or a `window` payload dict (recorded data / training sets);
    `to_dict`/`from_dict` round-trip it through JSON so datasets can store evidence, not media.
    """

    faces: list[FaceCue] = field(default_factory=list)
    speech: bool | None = None
    speech_ratio: float | None = None
    pitch_hz: float | None = None
    pitch_std_hz: float | None = None
    energy_db: float | None = None
    speaking_rate: float | None = None
    pause_ratio: float | None = None
    arousal: float | None = None
    transcript: str | None = None
    # top-k of the speech-emotion model's 7-class scores (payload `voice.scores`), descending
    voice_scores: list[tuple[str, float]] = field(default_factory=list)
    fast_label: str | None = None
    fast_score: float | None = None

    @classmethod
    def from_result(cls, result: WindowResult, top_k: int = TOP_EXPRESSIONS) -> Evidence:
        """Evidence of a live fast-path result."""
        return cls.from_payload(result.to_payload(), top_k=top_k)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], top_k: int = TOP_EXPRESSIONS) -> Evidence:
        """Evidence of a `window` payload (the MQTT JSON), so recorded streams become prompts too."""
        faces: list[FaceCue] = []
        for i, f in enumerate(payload.get("faces") or []):
            scores = f.get("scores") or {}
            top = sorted(((str(k), float(v)) for k, v in scores.items()), key=lambda kv: -kv[1])[:top_k]
            if not top and f.get("label") is not None:
                top = [(str(f["label"]), float(f.get("score") or 0.0))]
            actions = {str(k): float(v) for k, v in (f.get("actions") or {}).items()}
            faces.append(FaceCue(track=int(f.get("track", i)), expressions=top, actions=actions))
        v = payload.get("voice") or {}

        def num(key: str) -> float | None:
            x = v.get(key)
            return None if x is None else float(x)

        transcript = v.get("transcript")
        transcript = transcript.strip() if isinstance(transcript, str) and transcript.strip() else None
        vs = v.get("scores") or {}
        voice_scores = sorted(((str(k), float(x)) for k, x in vs.items()), key=lambda kv: -kv[1])[:top_k]
        label = payload.get("label")
        score = payload.get("score")
        return cls(
            faces=faces,
            speech=None if not v else bool(v.get("speech")),
            speech_ratio=num("speech_ratio"),
            pitch_hz=num("pitch_hz"),
            pitch_std_hz=num("pitch_std_hz"),
            energy_db=num("energy_db"),
            speaking_rate=num("speaking_rate"),
            pause_ratio=num("pause_ratio"),
            arousal=num("arousal"),
            transcript=transcript,
            voice_scores=voice_scores,
            fast_label=None if label is None else str(label),
            fast_score=None if score is None else float(score),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["faces"] = [
            {"track": f.track, "expressions": [[k, v] for k, v in f.expressions], "actions": f.actions}
            for f in self.faces
        ]
        d["voice_scores"] = [[k, v] for k, v in self.voice_scores]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        faces = [
            FaceCue(
                track=int(f["track"]),
                expressions=[(str(k), float(v)) for k, v in f.get("expressions", [])],
                actions={str(k): float(v) for k, v in (f.get("actions") or {}).items()},
            )
            for f in d.get("faces", [])
        ]
        rest = {k: d.get(k) for k in cls.__dataclass_fields__ if k not in ("faces", "voice_scores")}
        vs = [(str(k), float(v)) for k, v in d.get("voice_scores") or []]
        return cls(faces=faces, voice_scores=vs, **rest)

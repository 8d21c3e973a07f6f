"""Turn one window's perception results into the short text prompt the reasoning LLM reads.

Why text and not embeddings: the `lite` LLM (SmolLM2-135M) has no vision/audio towers, so the fast
path's measurements *are* its senses. The wording of the question follows R1-Omni's demo instruction
so a model trained by our RLVR trainer (which imports this module) sees exactly the prompt it will see
in production. Prefill is part of reasoning latency, so the cue block is compact: top-k expressions
per face, at most a few faces, rounded numbers, a truncated transcript.

Two layouts:
- `evidence` (default): the FIXED instruction first (system turn: question, labels, format rule, how
  to cite evidence), then one stable cue block per window in the user turn: `Face:`, `Voice:`,
  `Words:` lines, always present and always in that order ("none" when a modality is absent). The
  templated text up to the user turn is identical for every window, so llama.cpp keeps it in its KV
  cache and only the window's cues are prefilled. The fast label is left out: the reasoner should
  judge the evidence, not copy the rule it is meant to check (`agrees_with_fast_label` reports that).
- `compact`: the `evidence` layout with scores as whole percents ("angry 98", not "angry 0.98") and
  without the speech ratio. The small model's tokenizer spends one token per digit and one on the
  point, so this block is about a third shorter, and a think that cites "angry 98" writes two
  tokens fewer per number (generated tokens cost ~3× prefilled ones on a 2-core CPU).
- `legacy`: the layout the first adapter was trained on (cues, then the question, the fast label
  included) — kept for the latency baseline and to evaluate that adapter fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from affectstream.engine.labels import EMOTIONS
from affectstream.engine.types import WindowResult

# R1-Omni's README demo instruction, split so the label list can sit between question and format rule.
QUESTION = (
    "As an emotional recognition expert; throughout the video, "
    "which emotion conveyed by the characters is the most obvious to you?"
)
FORMAT_RULE = "Output the thinking process in <think> </think> and final emotion in <answer> </answer> tags."
# Qwen2-VL's template default, i.e. what R1-Omni's prompt effectively carried (docs/r1omni.md §3.4).
SYSTEM = "You are a helpful assistant."

TOP_EXPRESSIONS = 3  # per face: enough to show ambiguity, few enough to keep prefill short
MAX_FACES = 3
MAX_ACTIONS = 4
MAX_TRANSCRIPT_CHARS = 160
LAYOUTS = ("evidence", "compact", "legacy")
DEFAULT_LAYOUT = "evidence"
# How the think should read; the grounding reward (train/rewards.py) checks exactly this.
CITE_RULE = (
    "In the thinking, cite in 1-3 sentences the strongest evidence (face, voice or words) and never "
    "claim evidence marked none."
)
PERCENT_RULE = "Scores are percent."  # the `compact` layout's note, in the cached instruction


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


def compact_number(x: float, nd: int = 2) -> str:
    """Compact number: 0.72, 210, -22.5 — fewer tokens than full floats. Training targets cite scores
    with this same function, so a think copies a number exactly as the prompt shows it (a target that
    wrote 1.00 for a prompt's 1 taught the model to loop on zeros)."""
    s = f"{x:.{nd}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def percent(x: float) -> str:
    """A 0–1 score as a whole percent, 0.976 → "98": the `compact` layout's number (and its thinks')."""
    return str(round(100 * max(0.0, min(1.0, float(x)))))


def render_cues(evidence: Evidence, include_fast: bool = True) -> str:
    """The cue block alone (one line per source), e.g. for logging or for other prompt layouts."""
    lines: list[str] = []
    if not evidence.faces:
        lines.append("Face: none visible.")
    for n, face in enumerate(evidence.faces[:MAX_FACES], start=1):
        expr = ", ".join(f"{k} {compact_number(v)}" for k, v in face.expressions) or "unknown"
        line = f"Face {n}: {expr}"
        if face.actions:
            acts = sorted(face.actions.items(), key=lambda kv: -kv[1])[:MAX_ACTIONS]
            line += "; actions: " + ", ".join(f"{k} {compact_number(v)}" for k, v in acts)
        lines.append(line + ".")
    if len(evidence.faces) > MAX_FACES:
        lines.append(f"({len(evidence.faces) - MAX_FACES} more faces.)")

    if evidence.speech is None:
        lines.append("Voice: no audio.")
    elif not evidence.speech:
        lines.append("Voice: no speech.")
    else:
        parts = []
        if evidence.speech_ratio is not None:
            parts.append(f"speech {compact_number(evidence.speech_ratio)}")
        if evidence.pitch_hz is not None:
            p = f"pitch {compact_number(evidence.pitch_hz, 0)} Hz"
            if evidence.pitch_std_hz is not None:
                p += f" (var {compact_number(evidence.pitch_std_hz, 0)})"
            parts.append(p)
        if evidence.energy_db is not None:
            parts.append(f"energy {compact_number(evidence.energy_db, 1)} dB")
        if evidence.speaking_rate is not None:
            parts.append(f"rate {compact_number(evidence.speaking_rate, 1)}/s")
        if evidence.pause_ratio is not None:
            parts.append(f"pauses {compact_number(evidence.pause_ratio)}")
        if evidence.arousal is not None:
            parts.append(f"arousal {compact_number(evidence.arousal)}")
        lines.append("Voice: " + (", ".join(parts) or "speech") + ".")
    if evidence.transcript:
        lines.append(f'Words: "{_transcript(evidence.transcript)}"')
    if include_fast and evidence.fast_label is not None:
        fs = "" if evidence.fast_score is None else f" {compact_number(evidence.fast_score)}"
        lines.append(f"Fast model: {evidence.fast_label}{fs}.")
    return "\n".join(lines)


def _scores(pairs: Sequence[tuple[str, float]], num: Callable[[float], str] = compact_number) -> str:
    return ", ".join(f"{k} {num(v)}" for k, v in pairs)


def _transcript(text: str) -> str:
    t = " ".join(text.split())
    if len(t) > MAX_TRANSCRIPT_CHARS:
        t = t[: MAX_TRANSCRIPT_CHARS - 3].rstrip() + "..."
    return t


def render_evidence(evidence: Evidence, include_fast: bool = False, compact: bool = False) -> str:
    """The `evidence` layout's cue block: `Face:`, `Voice:`, `Words:` lines, always in this order.

    Every modality gets its line even when absent ("none"), so the model always sees what it may
    NOT claim, and the line names match the words the think is expected to use. `compact`: the
    `compact` layout's block (scores in whole percents, no speech ratio).
    """
    num = percent if compact else compact_number
    lines: list[str] = []
    faces = evidence.faces[:MAX_FACES]
    if not faces:
        lines.append("Face: none.")
    for n, face in enumerate(faces, start=1):
        line = f"Face{'' if len(faces) == 1 else f' {n}'}: {_scores(face.expressions, num) or 'unknown'}"
        if face.actions:
            acts = sorted(face.actions.items(), key=lambda kv: -kv[1])[:MAX_ACTIONS]
            line += "; " + _scores(acts, num)
        lines.append(line + ".")
    if len(evidence.faces) > MAX_FACES:
        lines.append(f"({len(evidence.faces) - MAX_FACES} more faces.)")

    if evidence.speech is None:
        lines.append("Voice: none.")
    elif not evidence.speech:
        lines.append("Voice: none (no speech).")
    else:
        prosody = []
        if evidence.speech_ratio is not None and not compact:
            prosody.append(f"speech {compact_number(evidence.speech_ratio)}")
        # pitch, loudness and arousal only: pitch variation, rate and pauses already feed arousal and
        # cost ~20 prefill tokens per window
        if evidence.pitch_hz is not None:
            prosody.append(f"pitch {compact_number(evidence.pitch_hz, 0)} Hz")
        if evidence.energy_db is not None:
            prosody.append(f"energy {compact_number(evidence.energy_db, 0)} dB")
        if evidence.arousal is not None:
            prosody.append(f"arousal {num(evidence.arousal)}")
        head = _scores(evidence.voice_scores, num)
        body = "; ".join(x for x in (head, ", ".join(prosody)) if x) or "speech"
        lines.append(f"Voice: {body}.")
    lines.append(f'Words: "{_transcript(evidence.transcript)}"' if evidence.transcript else "Words: none.")
    if include_fast and evidence.fast_label is not None:
        fs = "" if evidence.fast_score is None else f" {num(evidence.fast_score)}"
        lines.append(f"Fast model: {evidence.fast_label}{fs}.")
    return "\n".join(lines)


def cue_block(evidence: Evidence, layout: str = DEFAULT_LAYOUT, include_fast: bool = False) -> str:
    """The per-window part of a prompt in `layout` (what follows the cached head)."""
    if layout == "legacy":
        return render_cues(evidence, include_fast=include_fast)
    return render_evidence(evidence, include_fast=include_fast, compact=layout == "compact")


def instruction(labels: Sequence[str] = EMOTIONS, layout: str = DEFAULT_LAYOUT) -> str:
    """The fixed instruction of the `evidence`/`compact` layouts (identical for every window of a model)."""
    note = f" {PERCENT_RULE}" if layout == "compact" else ""
    return f"{QUESTION} Choose one of: {', '.join(labels)}.{note} {CITE_RULE} {FORMAT_RULE}"


def render_prompt(evidence: Evidence, labels: Sequence[str] = EMOTIONS, include_fast: bool = True) -> str:
    """The `legacy` user-turn text: cues, then R1-Omni's question, the allowed labels, its format rule.

    `include_fast=False` hides the fast model's label (RLVR training may want the model to judge
    from the cues alone rather than copy it).
    """
    return (
        f"{render_cues(evidence, include_fast=include_fast)}\n"
        f"{QUESTION} Choose one of: {', '.join(labels)}.  {FORMAT_RULE}"
    )


def chat_messages(
    evidence: Evidence,
    labels: Sequence[str] = EMOTIONS,
    include_fast: bool | None = None,
    system: str | None = SYSTEM,
    layout: str = DEFAULT_LAYOUT,
) -> list[dict[str, str]]:
    """System + user messages for a chat template (llama.cpp or HF).

    `evidence`/`compact` layouts: the instruction rides in the system turn (after `system`), the user turn holds
    only the cues, so everything before the cues is a constant prefix. `include_fast` defaults to
    False there and to True in `legacy` (what each layout's adapter was trained with).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown prompt layout {layout!r}; known: {', '.join(LAYOUTS)}")
    msgs: list[dict[str, str]] = []
    if layout == "legacy":
        if system:
            msgs.append({"role": "system", "content": system})
        fast = True if include_fast is None else include_fast
        msgs.append({"role": "user", "content": render_prompt(evidence, labels, fast)})
        return msgs
    head = instruction(labels, layout)
    cues = cue_block(evidence, layout, include_fast=bool(include_fast))
    if system:
        msgs.append({"role": "system", "content": f"{system} {head}"})
        msgs.append({"role": "user", "content": cues})
    else:
        msgs.append({"role": "user", "content": f"{head}\n{cues}"})
    return msgs

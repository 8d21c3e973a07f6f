"""Turn one window's perception results into the short text prompt the reasoning LLM reads.

Why text and not embeddings: the `lite` LLM (SmolLM2-135M) has no vision/audio towers, so the fast
path's measurements *are* its senses. The wording of the question follows R1-Omni's demo instruction
so a model trained by our RLVR trainer (which imports this module) sees exactly the prompt it will see
in production. Prefill is part of reasoning latency, so the cue block is compact: top-k expressions
per face, at most a few faces, rounded numbers, a truncated transcript.

The layouts:
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
- `ranked`: the `compact` block with its lines in order of weight — the present modalities strongest
  first (the grounding module's rule), the absent ones last. The think is expected to cite the
  strongest cue, and for a 135M model copying the first line is easier than comparing numbers
  across lines (the `compact` adapter named the strongest modality in 71 % of synthetic windows).
- `legacy`: the layout the first adapter was trained on (cues, then the question, the fast label
  included) — kept for the latency baseline and to evaluate that adapter fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm import grounding
from affectstream.engine.llm.evidence import Evidence

# R1-Omni's README demo instruction, split so the label list can sit between question and format rule.
QUESTION = (
    "As an emotional recognition expert; throughout the video, "
    "which emotion conveyed by the characters is the most obvious to you?"
)
FORMAT_RULE = "Output the thinking process in <think> </think> and final emotion in <answer> </answer> tags."
# Qwen2-VL's template default, i.e. what R1-Omni's prompt effectively carried (docs/r1omni.md §3.4).
SYSTEM = "You are a helpful assistant."

MAX_FACES = 3
MAX_ACTIONS = 4
MAX_TRANSCRIPT_CHARS = 160
LAYOUTS = ("evidence", "compact", "ranked", "legacy")
DEFAULT_LAYOUT = "evidence"
# How the think should read; the grounding reward (train/rewards.py) checks exactly this.
CITE_RULE = (
    "In the thinking, cite in 1-3 sentences the strongest evidence (face, voice or words) and never "
    "claim evidence marked none."
)
PERCENT_RULE = "Scores are percent."  # the `compact` layout's note, in the cached instruction
RANK_RULE = "Lines are ordered strongest first."  # the `ranked` layout's note


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


def render_evidence(
    evidence: Evidence, include_fast: bool = False, compact: bool = False, ranked: bool = False
) -> str:
    """The `evidence` layout's cue block: `Face:`, `Voice:`, `Words:` lines.

    Every modality gets its line even when absent ("none"), so the model always sees what it may
    NOT claim, and the line names match the words the think is expected to use. `compact`: the
    `compact` layout's block (scores in whole percents, no speech ratio). `ranked`: the `ranked`
    layout's order — the present modalities strongest first (grounding's weights, the very rule the
    grounding check and reward apply), then the absent ones; otherwise always face, voice, words.
    """
    num = percent if compact else compact_number
    blocks: dict[str, list[str]] = {"face": [], "voice": [], "words": []}
    faces = evidence.faces[:MAX_FACES]
    if not faces:
        blocks["face"].append("Face: none.")
    for n, face in enumerate(faces, start=1):
        line = f"Face{'' if len(faces) == 1 else f' {n}'}: {_scores(face.expressions, num) or 'unknown'}"
        if face.actions:
            acts = sorted(face.actions.items(), key=lambda kv: -kv[1])[:MAX_ACTIONS]
            line += "; " + _scores(acts, num)
        blocks["face"].append(line + ".")
    if len(evidence.faces) > MAX_FACES:
        blocks["face"].append(f"({len(evidence.faces) - MAX_FACES} more faces.)")

    if evidence.speech is None:
        blocks["voice"].append("Voice: none.")
    elif not evidence.speech:
        blocks["voice"].append("Voice: none (no speech).")
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
        blocks["voice"].append(f"Voice: {body}.")
    blocks["words"].append(
        f'Words: "{_transcript(evidence.transcript)}"' if evidence.transcript else "Words: none."
    )
    order = list(grounding.MODALITIES)
    if ranked:
        w = grounding.weights(evidence)  # present modalities only; ties keep face, voice, words
        order.sort(key=lambda m: (m not in w, -w.get(m, 0.0)))
    lines = [line for m in order for line in blocks[m]]
    if include_fast and evidence.fast_label is not None:
        fs = "" if evidence.fast_score is None else f" {num(evidence.fast_score)}"
        lines.append(f"Fast model: {evidence.fast_label}{fs}.")
    return "\n".join(lines)


def cue_block(evidence: Evidence, layout: str = DEFAULT_LAYOUT, include_fast: bool = False) -> str:
    """The per-window part of a prompt in `layout` (what follows the cached head)."""
    if layout == "legacy":
        return render_cues(evidence, include_fast=include_fast)
    compact = layout in ("compact", "ranked")
    return render_evidence(evidence, include_fast=include_fast, compact=compact, ranked=layout == "ranked")


def instruction(labels: Sequence[str] = EMOTIONS, layout: str = DEFAULT_LAYOUT) -> str:
    """The fixed instruction of the `evidence`/`compact` layouts (identical for every window of a model)."""
    note = {"compact": f" {PERCENT_RULE}", "ranked": f" {PERCENT_RULE} {RANK_RULE}"}.get(layout, "")
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

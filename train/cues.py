"""The cue dataset for the `lite` reasoner: evidence → prompt → label.

The `lite` LLM reads the fast path's measurements as text (engine/llm/prompt.py), so its training
data is (evidence, true label) pairs. Two sources:

(a) REAL: `window` payloads recorded by the lite analyzer over real media with a known label
    (`real_samples`), rendered with the very same prompt code.
(b) SYNTHETIC (`generate`): this module samples a true label, then evidence consistent with it. It is
    synthetic, and every number a model scores on it says so. The generator models:
    - face scores as FER-2013's mini-Xception produces them, including its typical confusions
      (fear↔surprise, sad↔neutral, angry↔disgust, plus a pull towards neutral), per-frame noise
      averaged over the window;
    - prosody consistent with the label's arousal (circumplex: angry/fear/surprise high, sad low),
      mapped to pitch, pitch variation, energy, speaking rate and pauses with noise;
    - in a share of samples a transcript: emotional words for the label, or neutral content;
    - a flagged `voice_decides` subset where the face is ambiguous or misleading (the confusion
      partner wins, the face is hidden, or the face is flat neutral) and the words carry the
      emotion — where a reasoner can beat the fast-path fusion rule, which only sees faces and
      arousal. The fast label in every prompt is computed by that rule (engine/fusion.py).
    - the speech-emotion model's 7-class scores (`voice.scores`), as a trained head produces them:
      the true label first with moderate confidence, or its acoustic confusion partner (angry↔happy,
      sad↔neutral, fear↔surprise, disgust↔angry); in `voice_decides` samples the voice is right.
      They come from their own random stream, so every other field is what it was without them.
    Fixed seeds give fixed train/val/test splits (`build_splits`). Phrases come from one bank
    shared by all splits (the test set measures reading of seen phrase types in new combinations,
    not open-vocabulary sentiment). The real speech set (train/real_cues.py) has no faces and only
    lexically neutral acted sentences, so the synthetic part is what teaches faces and emotional words.

SFT targets (`target_think`) are 1-3 short sentences that cite the strongest evidence actually
present first (engine/llm/grounding.py decides which), never a modality the window lacks, and end
with the answer; `consistent` says whether that strongest evidence points to the true label (only
such samples make sensible cold-start targets — the others are left to GRPO).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.fusion import TrackEvidence, VoiceEvidence, fuse
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm import grounding
from affectstream.engine.llm.prompt import Evidence, compact_number, percent, render_prompt

# FER-2013's typical confusions (both directions), used to pick the misleading runner-up.
CONFUSIONS: dict[str, tuple[str, ...]] = {
    "angry": ("disgust", "sad"),
    "disgust": ("angry",),
    "fear": ("surprise", "sad"),
    "happy": ("neutral", "surprise"),
    "sad": ("neutral", "fear"),
    "surprise": ("fear", "happy"),
    "neutral": ("sad", "happy"),
}
# Arousal centre per label (0 calm .. 1 agitated), circumplex model.
AROUSAL: dict[str, float] = {
    "angry": 0.82,
    "disgust": 0.5,
    "fear": 0.75,
    "happy": 0.62,
    "sad": 0.2,
    "surprise": 0.72,
    "neutral": 0.3,
}
# Emotional phrases per label (what words carry when they carry the emotion).
PHRASES: dict[str, tuple[str, ...]] = {
    "angry": (
        "this is outrageous, I am furious",
        "stop lying to me, I'm so angry",
        "get out of my way right now",
        "how dare you do this to me",
        "I'm sick of your excuses",
        "you ruined everything, damn it",
        "that makes me so mad",
        "don't you ever talk to me like that",
    ),
    "disgust": (
        "ew, that is disgusting",
        "yuck, it smells rotten",
        "that's gross, I feel sick",
        "ugh, how revolting",
        "I can't even look at that filth",
        "that is nasty, take it away",
        "eww, there's mold all over it",
        "so repulsive, I want to throw up",
    ),
    "fear": (
        "please, I'm scared, help me",
        "something is out there, I'm terrified",
        "I'm afraid they will find us",
        "oh no, please don't hurt me",
        "I'm so frightened right now",
        "what was that noise, I'm scared",
        "we have to hide, they're coming",
        "I'm panicking, I can't breathe",
    ),
    "happy": (
        "this is wonderful, I love it",
        "haha, that's great news",
        "I'm so happy for you",
        "what a beautiful day, I feel amazing",
        "we won, this is the best",
        "thank you so much, I'm delighted",
        "I can't stop smiling today",
        "yay, this is fantastic",
    ),
    "sad": (
        "I miss her so much",
        "I can't stop crying",
        "everything feels hopeless now",
        "he's gone and he's never coming back",
        "I feel so alone and empty",
        "I'm heartbroken, it's over",
        "nothing matters anymore",
        "I'm so sorry, I lost him",
    ),
    "surprise": (
        "wow, I did not expect that",
        "what? no way, really?",
        "oh my god, you're here!",
        "whoa, that's unbelievable",
        "seriously? I can't believe it",
        "wait, what just happened?",
        "oh! you scared me, what a surprise",
        "no way, since when?",
    ),
    "neutral": (
        "the meeting starts at three",
        "please pass me the report",
        "we'll take the second road on the left",
        "the package arrives on tuesday",
        "let me check the schedule",
        "I'll send you the file later",
        "the train leaves at nine",
        "okay, next item on the list",
    ),
}
NEUTRAL_CONTENT: tuple[str, ...] = PHRASES["neutral"]

# Mix of sample kinds (fractions of the generated set).
KIND_SHARES: dict[str, float] = {"clear": 0.45, "confusable": 0.2, "voice_decides": 0.3, "noisy": 0.05}
TRANSCRIPT_SHARE = 0.5  # share of non-`voice_decides` samples that carry a transcript
SPLIT_SEEDS: dict[str, int] = {"train": 1001, "val": 2002, "test": 3003}


@dataclass(slots=True)
class CueSample:
    """One prompt's worth of evidence with its true label and how it was made."""

    id: str
    label: str
    evidence: Evidence
    kind: str  # clear | confusable | voice_decides | noisy | real
    fast_label: str
    source: str = "synthetic"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def voice_decides(self) -> bool:
        return self.kind == "voice_decides"

    def prompt(self, labels: Sequence[str] = EMOTIONS) -> str:
        """The user-turn text, rendered by the production prompt code."""
        return render_prompt(self.evidence, labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "fast_label": self.fast_label,
            "source": self.source,
            "evidence": self.evidence.to_dict(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CueSample:
        return cls(
            id=str(d["id"]),
            label=str(d["label"]),
            evidence=Evidence.from_dict(d["evidence"]),
            kind=str(d.get("kind", "real")),
            fast_label=str(d.get("fast_label") or d["evidence"].get("fast_label") or ""),
            source=str(d.get("source", "synthetic")),
            meta=dict(d.get("meta") or {}),
        )


def _face_probs(rng: np.random.Generator, label: str, kind: str, py: random.Random) -> tuple[np.ndarray, str]:
    """Mean-face distribution for `kind`, and the label the face itself points to."""
    idx = {k: i for i, k in enumerate(EMOTIONS)}
    base = rng.dirichlet(np.full(len(EMOTIONS), 0.6)) * 0.25
    partner = py.choice(CONFUSIONS[label])
    p = base.copy()
    if kind == "clear":
        p[idx[label]] += rng.uniform(0.55, 0.9)
        p[idx[partner]] += rng.uniform(0.0, 0.15)
    elif kind == "confusable":  # true label narrowly first, partner close behind
        top = rng.uniform(0.35, 0.5)
        p[idx[label]] += top
        p[idx[partner]] += top - rng.uniform(0.05, 0.15)
    elif kind == "voice_decides":  # face points elsewhere: partner wins or a flat neutral face
        decoy = partner if (label == "neutral" or py.random() < 0.65) else "neutral"
        if decoy == label:
            decoy = py.choice([e for e in EMOTIONS if e != label])
        p[idx[decoy]] += rng.uniform(0.4, 0.7)
        p[idx[label]] += rng.uniform(0.0, 0.2)
    else:  # noisy: weak, random-looking face
        p[idx[label]] += rng.uniform(0.1, 0.3)
        p[idx[py.choice(EMOTIONS)]] += rng.uniform(0.1, 0.3)
    p = p / p.sum()
    return p, EMOTIONS[int(np.argmax(p))]


def _frames(rng: np.random.Generator, mean: np.ndarray, n: int) -> np.ndarray:
    """Per-frame probabilities around `mean` (FER jitters frame to frame)."""
    frames = rng.dirichlet(mean * 40 + 0.05, size=n)
    return frames


def _voice(rng: np.random.Generator, label: str) -> dict[str, float]:
    """Prosody consistent with the label's arousal, with realistic spread."""
    a = float(np.clip(AROUSAL[label] + rng.normal(0, 0.12), 0.0, 1.0))
    female = rng.random() < 0.5
    base_pitch = 205.0 if female else 120.0
    return {
        "speech": True,
        "speech_ratio": float(np.clip(rng.uniform(0.4, 0.95), 0, 1)),
        "pitch_hz": float(base_pitch * (0.85 + 0.45 * a) + rng.normal(0, 8)),
        "pitch_std_hz": float(max(3.0, 10 + 45 * a + rng.normal(0, 6))),
        "energy_db": float(-38 + 22 * a + rng.normal(0, 3)),
        "speaking_rate": float(max(0.5, 2.5 + 3.0 * a + rng.normal(0, 0.6))),
        "pause_ratio": float(np.clip(0.45 - 0.35 * a + rng.normal(0, 0.06), 0.0, 0.9)),
        "arousal": a,
    }


# Acoustic confusions of speech-emotion models (similar arousal), for the simulated voice scores.
VOICE_CONFUSIONS: dict[str, tuple[str, ...]] = {
    "angry": ("happy", "disgust"),
    "disgust": ("angry", "neutral"),
    "fear": ("surprise", "sad"),
    "happy": ("angry", "surprise"),
    "sad": ("neutral", "fear"),
    "surprise": ("fear", "happy"),
    "neutral": ("sad", "disgust"),
}
VOICE_RIGHT_SHARE = 0.65  # share of non-`voice_decides` samples whose voice model is right


def _voice_scores(seed: int, index: int, label: str, kind: str) -> dict[str, float]:
    """Simulated 7-class output of the speech-emotion head (own random stream: see the module doc)."""
    rng = np.random.default_rng([seed, index, 7])
    idx = {k: i for i, k in enumerate(EMOTIONS)}
    right = kind == "voice_decides" or rng.random() < VOICE_RIGHT_SHARE
    top = label if right else str(rng.choice(VOICE_CONFUSIONS[label]))
    p = rng.dirichlet(np.full(len(EMOTIONS), 0.8)) * 0.35
    p[idx[top]] += rng.uniform(0.45, 0.8) if kind == "voice_decides" else rng.uniform(0.25, 0.65)
    p = p / p.sum()
    return {k: float(v) for k, v in zip(EMOTIONS, p, strict=True)}


def _voice_evidence(voice: dict[str, Any]) -> VoiceEvidence:
    """VoiceEvidence for the fusion rule, with the voice scores when the rule accepts them."""
    names = getattr(VoiceEvidence, "__dataclass_fields__", {})
    if "scores" in names and voice.get("scores") is not None:
        return VoiceEvidence(voice["speech_ratio"], voice.get("arousal"), scores=voice["scores"])  # type: ignore[call-arg]
    return VoiceEvidence(voice["speech_ratio"], voice.get("arousal"))


def _analyzer_like(frames: np.ndarray, aux: np.random.Generator) -> np.ndarray:
    """Per-frame expression scores as confident as the FER model often is (0.95–1.0 on a clear face):
    in 60 % of windows each frame's distribution is sharpened (p^k, k 2.5–6), argmax unchanged."""
    if aux.random() >= 0.6:
        return frames
    sharp = frames ** aux.uniform(2.5, 6.0)
    return sharp / sharp.sum(axis=1, keepdims=True)


def _face_actions(shown: str, aux: np.random.Generator) -> dict[str, float]:
    """The face mesh's five geometric measures (engine/models/face_mesh.py) for a face showing `shown`.

    Ranges are rough, taken from what the analyzer reports on real faces (a smiling face: smile width
    ~0.75, eye opening ~0.27, brow raise ~0.2, mouth opening ~0.06) with plausible shifts per
    expression; they are there so the reasoner has seen an `actions` line, not to carry the label.
    """
    wide = shown in ("surprise", "fear")
    return {
        "smile_width": round(
            float(aux.uniform(0.65, 0.85) if shown == "happy" else aux.uniform(0.5, 0.68)), 4
        ),
        "eye_open": round(float(aux.uniform(0.3, 0.45) if wide else aux.uniform(0.2, 0.32)), 4),
        "brow_raise": round(float(aux.uniform(0.28, 0.42) if wide else aux.uniform(0.15, 0.27)), 4),
        "mouth_open": round(
            float(aux.uniform(0.12, 0.35) if shown == "surprise" else aux.uniform(0.0, 0.12)), 4
        ),
        "mouth_corner_lift": round(
            float(aux.uniform(0.0, 0.03) if shown == "happy" else aux.uniform(-0.03, 0.01)), 4
        ),
    }


def synth_sample(
    index: int,
    seed: int,
    kind: str | None = None,
    label: str | None = None,
    voice_model: bool = True,
    analyzer_faces: bool | float = False,
) -> CueSample:
    """One synthetic sample; deterministic in (seed, index). `voice_model`: add voice-model scores.

    `analyzer_faces`: faces as the `lite` analyzer reports them (a float: in that share of samples) —
    often saturated expression scores and the face mesh's actions (`_analyzer_like`, `_face_actions`),
    from their own random stream, so everything else about the sample is unchanged. Why: the default
    synthetic faces never score above 0.9 and carry no actions, while the analyzer's do; a reasoner
    trained without them misread the bundled sample's `happy 100` face with four actions."""
    py = random.Random(seed * 1_000_003 + index)
    rng = np.random.default_rng([seed, index])
    label = label or py.choice(EMOTIONS)
    if kind is None:
        r, acc = py.random(), 0.0
        kind = "clear"
        for k, share in KIND_SHARES.items():
            acc += share
            if r < acc:
                kind = k
                break
    hide_face = kind == "voice_decides" and py.random() < 0.15
    mean, face_points = _face_probs(rng, label, kind, py)
    n_frames = 8
    tracks: list[TrackEvidence] = []
    faces: list[dict[str, Any]] = []
    share = float(analyzer_faces)  # True = every sample; a float = that share of samples
    aux = np.random.default_rng([seed, index, 11]) if share > 0 else None
    if aux is not None and share < 1 and np.random.default_rng([seed, index, 13]).random() >= share:
        aux = None
    if not hide_face:
        frames = _frames(rng, mean, n_frames)
        det = rng.uniform(0.7, 0.99, size=n_frames)
        if aux is not None:
            frames = _analyzer_like(frames, aux)
        tr = TrackEvidence(track=1, probs=frames, det_scores=det, box=(100, 60, 220, 180))
        tracks.append(tr)
        mp = tr.mean_probs()
        top = int(np.argmax(mp))
        faces.append(
            {
                "track": 1,
                "box": [100, 60, 220, 180],
                "label": EMOTIONS[top],
                "score": float(mp[top]),
                "scores": {k: float(v) for k, v in zip(EMOTIONS, mp, strict=True)},
            }
        )
        if aux is not None:
            faces[-1]["actions"] = _face_actions(EMOTIONS[top], aux)
    speaking = kind == "voice_decides" or py.random() < 0.8
    voice: dict[str, Any] | None
    if speaking:
        voice = _voice(rng, label)
        transcript = None
        if kind == "voice_decides":
            transcript = py.choice(PHRASES[label])
        elif py.random() < TRANSCRIPT_SHARE:
            # Words either agree with the label or say nothing emotional.
            transcript = py.choice(PHRASES[label]) if py.random() < 0.5 else py.choice(NEUTRAL_CONTENT)
        voice["transcript"] = transcript
        if voice_model:
            voice["scores"] = _voice_scores(seed, index, label, kind)
    else:
        voice = {"speech": False, "speech_ratio": 0.0, "arousal": None, "transcript": None}
    fused = fuse(tracks, _voice_evidence(voice) if voice else None)
    payload = {
        "label": fused.label,
        "score": fused.score,
        "faces": faces,
        "voice": voice,
    }
    ev = Evidence.from_payload(payload)
    return CueSample(
        id=f"syn-{seed}-{index}",
        label=label,
        evidence=ev,
        kind=kind,
        fast_label=fused.label,
        meta={"face_points": face_points, "face_hidden": hide_face},
    )


def generate(
    n: int, seed: int, voice_model: bool = True, analyzer_faces: bool | float = False
) -> list[CueSample]:
    """`n` synthetic samples from `seed` (same inputs → same samples, on every machine)."""
    return [synth_sample(i, seed, voice_model=voice_model, analyzer_faces=analyzer_faces) for i in range(n)]


def build_splits(
    n_train: int = 1200,
    n_val: int = 150,
    n_test: int = 300,
    voice_model: bool = True,
    analyzer_faces: bool | float = False,
) -> dict[str, list[CueSample]]:
    """The fixed synthetic splits (disjoint seeds), sizes as given."""
    return {
        k: generate(n, SPLIT_SEEDS[k], voice_model, analyzer_faces)
        for k, n in (("train", n_train), ("val", n_val), ("test", n_test))
    }


def real_samples(records: Iterable[dict[str, Any]]) -> Iterator[CueSample]:
    """Real samples from `{"id", "label", "payload"}` records: a lite `window` payload over real media."""
    for i, rec in enumerate(records):
        label = str(rec["label"])
        if label not in EMOTIONS:
            raise ValueError(f"record {rec.get('id', i)}: label {label!r} is not one of {EMOTIONS}")
        ev = Evidence.from_payload(rec["payload"])
        yield CueSample(
            id=str(rec.get("id", f"real-{i}")),
            label=label,
            evidence=ev,
            kind="real",
            fast_label=ev.fast_label or "",
            source="real",
        )


def save_jsonl(samples: Iterable[CueSample], path: str | Path) -> int:
    """Write samples as JSON lines; returns the count."""
    n = 0
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict()) + "\n")
            n += 1
    return n


def load_jsonl(path: str | Path) -> list[CueSample]:
    """Read a cue set written by `save_jsonl`; a bad line raises ValueError naming the line."""
    out: list[CueSample] = []
    with Path(path).open(encoding="utf-8") as f:
        for ln, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                out.append(CueSample.from_dict(json.loads(line)))
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"{path}:{ln}: not a cue sample ({e})") from e
    return out


def _tone(arousal: float | None) -> str | None:
    if arousal is None:
        return None
    return "loud and tense" if arousal >= 0.6 else "quiet and calm" if arousal <= 0.35 else "even"


def _quote(text: str, words: int = 6) -> str:
    w = text.split()
    return " ".join(w[:words]) + ("..." if len(w) > words else "")


def modality_label(ev: Evidence, modality: str) -> str | None:
    """The label a modality points to on its own (None: present but says no emotion, or absent)."""
    if modality == "face" and ev.faces and ev.faces[0].expressions:
        return ev.faces[0].expressions[0][0]
    if modality == "voice" and ev.speech and ev.voice_scores:
        return ev.voice_scores[0][0]
    if modality == "words":
        we = grounding.word_emotion(ev.transcript)
        return we[0] if we else None
    return None


def consistent(sample: CueSample) -> bool:
    """True when the strongest evidence present points to the true label (a sensible SFT target)."""
    top = grounding.strongest(sample.evidence)
    return top is not None and modality_label(sample.evidence, top) == sample.label


def _describe(ev: Evidence, modality: str, terse: bool = False) -> str:
    """One cue in words. `terse` (the `compact` think): "voice angry 98, loud and tense" — the
    numbers as the `compact` prompt shows them, no verbs (every generated token is latency)."""
    num = percent if terse else compact_number
    if modality == "face":
        lab, sc = ev.faces[0].expressions[0] if ev.faces[0].expressions else ("unclear", 0.0)
        acts = sorted((ev.faces[0].actions or {}).items(), key=lambda kv: -kv[1])
        extra = f" with {acts[0][0].replace('_', ' ')}" if acts and acts[0][1] >= 0.3 and not terse else ""
        return f"{'face' if terse else 'the face shows'} {lab} {num(sc)}{extra}"
    if modality == "voice":
        tone = _tone(ev.arousal)
        if ev.voice_scores:
            lab, sc = ev.voice_scores[0]
            return f"{'voice' if terse else 'the voice sounds'} {lab} {num(sc)}" + (
                f", {tone}" if tone else ""
            )
        nums = ", ".join(
            x
            for x in (
                None if ev.pitch_hz is None else f"pitch {ev.pitch_hz:.0f} Hz",
                None if ev.arousal is None else f"arousal {num(ev.arousal)}",
            )
            if x
        )
        return f"the voice is {tone or 'plain'}" + (f" ({nums})" if nums else "")
    we = grounding.word_emotion(ev.transcript)
    q = _quote(ev.transcript or "", 4 if terse else 6)
    if terse:
        return f'words "{q}" sound {we[0]}' if we else f'words "{q}" neutral'
    return f'the words "{q}" sound {we[0]}' if we else f'the words "{q}" are neutral'


def without_speech(sample: CueSample) -> CueSample:
    """The same window as the VAD would report it had it missed the speech: no voice cues, the
    transcript kept (Whisper still hears words), the fast label then `neutral` as the engine emits it.

    Why: the VAD misses some emotional utterances (6 of 159 held-out real windows), and a reasoner that
    saw almost no such window in training started every think with "The voice sounds ..." and looped on
    digits there. A small share of these copies teaches the words-first think for them."""
    ev = Evidence.from_dict(sample.evidence.to_dict())
    ev.speech, ev.speech_ratio, ev.voice_scores = False, 0.0, []
    ev.pitch_hz = ev.pitch_std_hz = ev.speaking_rate = ev.pause_ratio = ev.arousal = None
    if not ev.faces:
        ev.fast_label, ev.fast_score = "neutral", round(1 / len(EMOTIONS), 4)
    return CueSample(
        id=f"{sample.id}#nospeech",
        label=sample.label,
        evidence=ev,
        kind=sample.kind,
        fast_label=ev.fast_label or sample.fast_label,
        source=sample.source,
        meta={**sample.meta, "augment": "no_speech"},
    )


THINK_STYLES = ("full", "short", "compact")


def target_think(sample: CueSample, style: str = "full") -> str:
    """A short, grounded rationale for cold-start SFT: 1-3 sentences, strongest evidence first.

    Cites only modalities the window has, states a missing face or speech plainly ("no face in
    view"), and ends with the answer; the grounding reward gives every target 1.0 (tested).
    `style="short"`: one sentence — the strongest cue plus the missing face or one supporting cue —
    because on a 2-core CPU every generated token adds to a reasoning budget of 1.5 s.
    `style="compact"`: the short sentence in fewest tokens, for the `compact` prompt layout — numbers
    in whole percents as that prompt shows them, no verbs, no closing "So X." (the answer tag says it):
    "Voice angry 98, loud and tense; no face."
    """
    if style not in THINK_STYLES:
        raise ValueError(f"think style must be one of {THINK_STYLES}, not {style!r}")
    ev = sample.evidence
    have = grounding.present(ev)
    top = grounding.strongest(ev)
    terse = style == "compact"
    first = _describe(ev, top, terse) if top else "no face in view and no speech"
    # supporting cues: the one that agrees with the strongest first, then the others
    top_label = modality_label(ev, top) if top else None
    rest = sorted(
        (m for m in grounding.MODALITIES if m in have and m != top),
        key=lambda m: modality_label(ev, m) != top_label,
    )
    second: list[str] = []
    for m in rest:
        lab = modality_label(ev, m)
        neutral = "words neutral" if terse else "the words are neutral"
        second.append(neutral if m == "words" and lab is None else _describe(ev, m, terse))
    if terse:
        if "face" not in have and top is not None:
            first += "; no face"
        elif second and modality_label(ev, rest[0]) == top_label:
            first += "; " + second[0]
        return f"{first[0].upper() + first[1:]}."
    if style == "short":
        if "face" not in have and top is not None:
            first += "; no face in view"
        elif second and modality_label(ev, rest[0]) == top_label:
            first += "; " + second[0]
        return f"{first[0].upper() + first[1:]}. So {sample.label}."
    if "face" not in have and top is not None:
        second.append("no face in view")
    s1 = first[0].upper() + first[1:] + "."
    s2 = ""
    if "face" not in have and top is not None:
        second = list(dict.fromkeys(second[:1] + second[-1:]))  # one supporting cue + the missing face
    if second:
        joined = "; ".join(second[:2])
        s2 = " " + joined[0].upper() + joined[1:] + "."
    return f"{s1}{s2} So {sample.label}."


def target_completion(sample: CueSample, style: str = "full") -> str:
    """The SFT target: `<think>rationale</think>\\n<answer>label</answer>` (format reward = 1)."""
    return f"<think>{target_think(sample, style)}</think>\n<answer>{sample.label}</answer>"

"""Which modalities a think cites, which the window really had, and which carried the most weight.

Why here (engine, not train): the same rules serve three jobs — the `evidence` field of every
`reasoning` message, the GRPO grounding reward (train/rewards.py) and the evaluation's grounding
figures — and a check that differs between training and production would reward one thing and
ship another. Everything is decided by parsing and fixed rules, never by another model:

- present: face = at least one face was measured; voice = speech was detected; words = a transcript.
- weight: face = the first face's top expression score; voice = the speech-emotion model's top score
  (or a weak 0.3 from prosody alone when no voice model ran); words = 0.8 when the transcript holds
  an emotion word of `WORD_CUES` (explicit emotional words are strong evidence), else 0.1.
  The strongest modality is the present one with the largest weight.
- cited: a think's clauses are scanned for modality terms (`TERMS`); a clause with a negation
  ("no face in view", "voice: none") *denies* the modality instead of citing it. Citing a modality
  the window lacks is a grounding violation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from affectstream.engine.llm.evidence import Evidence

MODALITIES = ("face", "voice", "words")
TERMS: dict[str, tuple[str, ...]] = {
    "face": ("face", "faces", "facial", "smile", "smiling", "smiles", "frown", "frowning", "brow", "brows"),
    "voice": (
        "voice", "voices", "vocal", "tone", "pitch", "prosody", "loud", "loudly", "shouting", "energy",
        "speaking", "speech", "arousal",
    ),
    "words": ("words", "word", "said", "says", "saying", "transcript", "phrase", "sentence", "wording"),
}  # fmt: skip
_NEGATION = re.compile(r"\b(no|not|none|without|absent|missing|hidden|silent|nothing|neither|nor)\b")
_CLAUSE = re.compile(r"[.;,!?\n]+|\s+but\s+|\s+while\s+|\s+and\s+|\s+whereas\s+")
_TOKEN = re.compile(r"[a-z_']+")
_QUOTE = re.compile(r'"[^"]{2,}"')

# Emotion words of transcripts (stems matched at word start). Small on purpose: the words weight
# only has to tell "the words carry an emotion" from "neutral content"; which emotion is the model's job.
WORD_CUES: dict[str, tuple[str, ...]] = {
    "angry": (
        "angry",
        "furious",
        "mad",
        "outrage*",
        "hate",
        "damn",
        "dare",
        "sick of",
        "ruined",
        "lying",
        "get out",
        "annoy*",
        "ridiculous",
        "stupid",
        "shut up",
        "anger",
    ),
    "disgust": (
        "disgust*",
        "gross",
        "yuck",
        "ew*",
        "revolting",
        "nasty",
        "filth*",
        "rotten",
        "repuls*",
        "throw up",
        "mold",
        "vile",
    ),
    "fear": (
        "scared",
        "afraid",
        "terrified",
        "frighten*",
        "panic*",
        "help me",
        "hurt me",
        "hide",
        "nervous",
        "worried",
        "fear*",
    ),
    "happy": (
        "happy",
        "love",
        "wonderful",
        "great",
        "amazing",
        "fantastic",
        "delighted",
        "yay",
        "haha*",
        "smiling",
        "the best",
        "thank*",
        "glad",
        "awesome",
        "beautiful",
    ),
    "sad": (
        "sad",
        "miss",
        "crying",
        "cry",
        "hopeless",
        "alone",
        "heartbroken",
        "lost him",
        "lost her",
        "sorry",
        "gone",
        "empty",
        "nothing matters",
        "depress*",
    ),
    "surprise": (
        "wow",
        "no way",
        "unbelievable",
        "whoa",
        "can't believe",
        "did not expect",
        "didn't expect",
        "oh my god",
        "what just happened",
        "seriously",
        "surprise*",
        "really?",
    ),
}  # fmt: skip; a trailing * marks a stem (any ending), otherwise the cue must end at a word boundary
_CUE_RE: dict[str, re.Pattern[str]] = {
    label: re.compile(
        "|".join(
            r"(?<![a-z'])"
            + re.escape(c.rstrip("*"))
            + ("" if c.endswith("*") or c.endswith("?") else r"(?![a-z'])")
            for c in cues
        )
    )
    for label, cues in WORD_CUES.items()
}
WORDS_WEIGHT = 0.8
WORDS_NEUTRAL_WEIGHT = 0.1
PROSODY_ONLY_WEIGHT = 0.3


def word_emotion(transcript: str | None) -> tuple[str, int] | None:
    """(label, hits) of the emotion the transcript's words name most often, or None if they name none."""
    if not transcript:
        return None
    t = " ".join(transcript.casefold().replace("\u2019", "'").split())
    best: tuple[str, int] | None = None
    for label, rx in _CUE_RE.items():
        hits = len(rx.findall(t))
        if hits and (best is None or hits > best[1]):
            best = (label, hits)
    return best


def present(ev: Evidence) -> set[str]:
    """The modalities this window really has."""
    out = set()
    if ev.faces:
        out.add("face")
    if ev.speech:
        out.add("voice")
    if ev.transcript:
        out.add("words")
    return out


def weights(ev: Evidence) -> dict[str, float]:
    """Weight of each PRESENT modality (see the module docstring for the fixed rules)."""
    w: dict[str, float] = {}
    if ev.faces and ev.faces[0].expressions:
        w["face"] = float(ev.faces[0].expressions[0][1])
    elif ev.faces:
        w["face"] = 0.0
    if ev.speech:
        w["voice"] = float(ev.voice_scores[0][1]) if ev.voice_scores else PROSODY_ONLY_WEIGHT
    if ev.transcript:
        w["words"] = WORDS_WEIGHT if word_emotion(ev.transcript) else WORDS_NEUTRAL_WEIGHT
    return w


def strongest(ev: Evidence) -> str | None:
    """The present modality that carried the most weight (ties: face, voice, words order), or None."""
    w = weights(ev)
    if not w:
        return None
    return max(MODALITIES, key=lambda m: (w.get(m, -1.0), -MODALITIES.index(m)))


def cited(think: str) -> tuple[set[str], set[str]]:
    """(cited, denied) modalities of a think, by clause: a negated clause denies, others cite."""
    claims: set[str] = set()
    denials: set[str] = set()
    text = think.casefold()
    if _QUOTE.search(think):
        claims.add("words")  # a quotation is a claim about what was said
        text = _QUOTE.sub(" ", text)
    for clause in _CLAUSE.split(text):
        toks = set(_TOKEN.findall(clause))
        if not toks:
            continue
        hit = {m for m, terms in TERMS.items() if toks & set(terms)}
        if not hit:
            continue
        (denials if _NEGATION.search(clause) else claims).update(hit)
    return claims, denials


@dataclass(slots=True, frozen=True)
class Grounding:
    """A think checked against its window: what it cites, what it wrongly claims, the strongest cue."""

    cited: tuple[str, ...]
    violations: tuple[str, ...]  # cited but absent from the window
    strongest: str | None
    names_strongest: bool
    weights: Mapping[str, float] = field(default_factory=dict)

    @property
    def grounded(self) -> bool:
        return not self.violations


def check(think: str, ev: Evidence) -> Grounding:
    """Check one think against the evidence it was written from."""
    claims, _ = cited(think or "")
    have = present(ev)
    top = strongest(ev)
    order = [m for m in MODALITIES if m in claims]
    return Grounding(
        cited=tuple(order),
        violations=tuple(m for m in order if m not in have),
        strongest=top,
        names_strongest=top is None or top in claims,
        weights=weights(ev),
    )

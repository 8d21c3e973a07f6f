"""Hand-written, realistic evidence for each emotion: smoke tests, benchmarks, accuracy sanity checks.

A test and bench helper, not part of the installed package (benches put tests/ on sys.path).

The numbers mimic what the lite perception stack reports (FER-2013 softmax scores, prosody in Hz /
dB / peaks per second, arousal 0–1, a Whisper-style transcript). Two cases per label, one clear and
one ambiguous, so an accuracy figure over them is a rough floor check — not a benchmark result.
"""

from __future__ import annotations

from affectstream.engine.llm.evidence import Evidence, FaceCue


def _ev(
    expr: list[tuple[str, float]],
    actions: dict[str, float] | None,
    voice: tuple[float, float, float, float, float, float, float] | None,
    words: str | None,
    fast: tuple[str, float],
) -> Evidence:
    faces = [FaceCue(1, expr, actions or {})] if expr else []
    if voice is None:
        return Evidence(faces=faces, speech=False, transcript=words, fast_label=fast[0], fast_score=fast[1])
    ratio, pitch, pstd, energy, rate, pauses, arousal = voice
    return Evidence(
        faces=faces,
        speech=True,
        speech_ratio=ratio,
        pitch_hz=pitch,
        pitch_std_hz=pstd,
        energy_db=energy,
        speaking_rate=rate,
        pause_ratio=pauses,
        arousal=arousal,
        transcript=words,
        fast_label=fast[0],
        fast_score=fast[1],
    )


# (evidence, the label a careful human would give)
CUE_EXAMPLES: list[tuple[Evidence, str]] = [
    (
        _ev(
            [("angry", 0.71), ("disgust", 0.12), ("neutral", 0.08)],
            {"brow_lower": 0.8, "lip_press": 0.6},
            (0.92, 238, 61, -13.5, 5.2, 0.04, 0.88),
            "I told you to stop doing that!",
            ("angry", 0.66),
        ),
        "angry",
    ),
    (
        _ev(
            [("angry", 0.41), ("neutral", 0.33), ("sad", 0.14)],
            None,
            (0.75, 190, 44, -17.0, 4.6, 0.10, 0.71),
            "This is completely unacceptable.",
            ("angry", 0.39),
        ),
        "angry",
    ),
    (
        _ev(
            [("disgust", 0.64), ("angry", 0.18), ("neutral", 0.09)],
            {"nose_wrinkle": 0.7, "upper_lip_raise": 0.6},
            (0.40, 165, 25, -24.0, 3.1, 0.35, 0.42),
            "Ugh, that smells rotten.",
            ("disgust", 0.57),
        ),
        "disgust",
    ),
    (
        _ev(
            [("disgust", 0.38), ("angry", 0.31), ("sad", 0.15)],
            None,
            None,
            None,
            ("disgust", 0.36),
        ),
        "disgust",
    ),
    (
        _ev(
            [("fear", 0.67), ("surprise", 0.19), ("sad", 0.07)],
            {"brow_raise": 0.8, "eyes_wide": 0.9},
            (0.85, 265, 70, -16.0, 5.8, 0.06, 0.83),
            "Please, please don't come any closer.",
            ("fear", 0.61),
        ),
        "fear",
    ),
    (
        _ev(
            [("fear", 0.36), ("sad", 0.29), ("neutral", 0.2)],
            None,
            (0.55, 210, 38, -26.0, 3.9, 0.28, 0.58),
            "I don't know what is out there.",
            ("fear", 0.33),
        ),
        "fear",
    ),
    (
        _ev(
            [("happy", 0.88), ("neutral", 0.06), ("surprise", 0.03)],
            {"smile": 0.92, "mouth_open": 0.4},
            (0.80, 225, 48, -18.0, 4.4, 0.12, 0.66),
            "That's wonderful news, congratulations!",
            ("happy", 0.84),
        ),
        "happy",
    ),
    (
        _ev(
            [("happy", 0.46), ("neutral", 0.38), ("surprise", 0.08)],
            {"smile": 0.55},
            None,
            None,
            ("happy", 0.44),
        ),
        "happy",
    ),
    (
        _ev(
            [("sad", 0.69), ("neutral", 0.17), ("fear", 0.07)],
            {"lip_corner_down": 0.7},
            (0.45, 140, 12, -31.0, 2.3, 0.48, 0.18),
            "I miss her so much.",
            ("sad", 0.63),
        ),
        "sad",
    ),
    (
        _ev(
            [("sad", 0.39), ("neutral", 0.37), ("angry", 0.1)],
            None,
            (0.30, 130, 10, -33.0, 2.0, 0.6, 0.12),
            "It doesn't matter anymore.",
            ("neutral", 0.41),
        ),
        "sad",
    ),
    (
        _ev(
            [("surprise", 0.79), ("happy", 0.09), ("fear", 0.07)],
            {"brow_raise": 0.9, "mouth_open": 0.85},
            (0.35, 290, 80, -15.0, 3.0, 0.4, 0.79),
            "Oh! What?",
            ("surprise", 0.74),
        ),
        "surprise",
    ),
    (
        _ev(
            [("surprise", 0.42), ("fear", 0.3), ("neutral", 0.15)],
            {"mouth_open": 0.6},
            None,
            None,
            ("surprise", 0.4),
        ),
        "surprise",
    ),
    (
        _ev(
            [("neutral", 0.81), ("sad", 0.08), ("happy", 0.05)],
            None,
            (0.70, 160, 15, -22.0, 3.8, 0.2, 0.35),
            "The meeting is moved to three o'clock.",
            ("neutral", 0.78),
        ),
        "neutral",
    ),
    (
        _ev(
            [("neutral", 0.52), ("happy", 0.2), ("sad", 0.16)],
            None,
            (0.60, 150, 14, -23.5, 3.5, 0.25, 0.3),
            "Next, open the settings page.",
            ("neutral", 0.5),
        ),
        "neutral",
    ),
]

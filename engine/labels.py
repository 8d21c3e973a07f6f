"""The label sets results are expressed in.

The `lite` profile speaks FER-2013's seven classes; R1-Omni's DFEW set is the same seven words in a
different order and MAFW adds four. Keeping them in one place means every payload, prompt, grammar and
metric agrees on spelling.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

DFEW_LABELS: tuple[str, ...] = ("happy", "surprise", "neutral", "angry", "disgust", "sad", "fear")
MAFW_LABELS: tuple[str, ...] = (*DFEW_LABELS, "contemptuous", "disappointed", "helpless", "anxious")
RAVDESS_LABELS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")


def uniform_scores(labels: tuple[str, ...] = EMOTIONS) -> dict[str, float]:
    """Scores that claim nothing: used when a window carries no usable evidence."""
    p = 1.0 / len(labels)
    return {k: p for k in labels}

"""How far can ANY model that reads the reasoner's real-speech evidence get above the fast label?

    python bench/bench_reasoner_ceiling.py --cues RUN/real    # train.jsonl + test.jsonl from train.real_cues

Why: the grounded-reasoner goal asks for +10 points over the fast label where the voice or the words carry
the emotion. On the real split every window is audio-only acted speech, and the fast label is the
speech-emotion head's calibrated argmax. The reasoner sees the head's top-3 scores, pitch, loudness,
arousal and the transcript (whose words the grounding rule scans for emotion words). This script trains
two small classifiers on exactly those inputs of the real TRAIN windows (31 speakers, cross-fitted voice
scores: each from a head that never heard that speaker) and scores them on the held-out TEST windows
(8 other speakers) — an estimate of the headroom a 135M reasoner could at best learn from this evidence.
Prints one JSON object: WAR/UAR of the fast label and of each classifier on the test windows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm import grounding
from affectstream.train.cues import CueSample, load_jsonl
from affectstream.train.evaluate import metrics


def features(sample: CueSample) -> list[float]:
    ev = sample.evidence
    voice = dict.fromkeys(EMOTIONS, 0.0) | {k: v for k, v in ev.voice_scores}
    words = grounding.word_emotion(ev.transcript)
    return [
        *(voice[k] for k in EMOTIONS),
        float(bool(ev.speech)),
        (ev.pitch_hz or 0.0) / 300.0,
        (ev.energy_db or -60.0) / 60.0,
        ev.arousal or 0.0,
        *(float(words is not None and words[0] == k) for k in EMOTIONS),
    ]


def scores(y: list[str], p: list[str]) -> dict[str, float]:
    r = metrics(y, p)  # the evaluator's WAR/UAR, so these figures compare with `affectstream eval`'s
    return {"war": round(r.war, 1), "uar": round(r.uar, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cues", type=Path, required=True, help="folder with train.jsonl and test.jsonl")
    a = ap.parse_args()
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    train, test = load_jsonl(a.cues / "train.jsonl"), load_jsonl(a.cues / "test.jsonl")
    xtr, ytr = np.array([features(s) for s in train]), [s.label for s in train]
    xte, yte = np.array([features(s) for s in test]), [s.label for s in test]
    out: dict[str, object] = {"n_train": len(train), "n_test": len(test)}
    out["fast_label"] = scores(yte, [s.fast_label or "neutral" for s in test])
    lr = LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced").fit(xtr, ytr)
    out["logistic_regression"] = scores(yte, list(lr.predict(xte)))
    gb = HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=200, random_state=0)
    out["gradient_boosting"] = scores(yte, list(gb.fit(xtr, ytr).predict(xte)))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

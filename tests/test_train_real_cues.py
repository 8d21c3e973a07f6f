"""Real cue set builder: speaker-disjoint folds, deterministic selection, the lite analyzer on FLAC clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from affectstream.train import real_cues
from affectstream.train.cues import load_jsonl


def _corpus(root: Path, speakers: int = 6, per: int = 2) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    rows = []
    for s in range(speakers):
        for j, label in enumerate(["angry", "sad"] * per):
            rel = f"toy/spk{s}/c{j}.flac"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            t = np.arange(int(2.6 * 16000)) / 16000
            # voiced-like: a pitched tone with harmonics under an amplitude envelope, plus noise
            f0 = 120 + 40 * s + (60 if label == "angry" else 0)
            x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (
                0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
            )
            x = (0.2 * x + 0.01 * rng.normal(size=t.size)).astype(np.float32)
            sf.write(root / rel, x, 16000, format="FLAC")
            rows.append({"file": rel, "label": label, "dataset": "toy", "speaker": f"spk{s}"})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_folds_are_per_speaker_and_deterministic() -> None:
    folds = {s: real_cues.speaker_fold("ravdess", f"actor{s:02d}") for s in range(1, 25)}
    assert folds == {s: real_cues.speaker_fold("ravdess", f"actor{s:02d}") for s in range(1, 25)}
    assert set(folds.values()) == set(range(5))
    assert real_cues.speaker_fold("a", "x") == real_cues.speaker_fold("a", "x", folds=5)


def test_bad_labels_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"labels\.csv"):
        real_cues.read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label,dataset,speaker\na.flac,bored,x,y\n")
    with pytest.raises(ValueError, match="bored"):
        real_cues.read_labels(tmp_path)
    assert real_cues.main(["--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2


def test_build_on_generated_clips_is_speaker_disjoint(tmp_path: Path, lite_profile: Path) -> None:
    data = _corpus(tmp_path / "data")
    rows = real_cues.select(real_cues.read_labels(data), per_class=1)
    assert len(rows) == 12  # 6 speakers x 2 labels x 1
    out = tmp_path / "out"
    summary = real_cues.build(
        data, out, per_class=1, transcript=False, folds=3, test_fold=0, profile=str(lite_profile)
    )
    train, test = load_jsonl(out / "train.jsonl"), load_jsonl(out / "test.jsonl")
    folds = real_cues.voice_head_folds(data, 3)
    assert len(train) + len(test) == 12 and test and train
    assert not {s.meta["speaker"] for s in train} & {s.meta["speaker"] for s in test}
    for s in train + test:
        assert s.kind == "real" and s.source == "real" and not s.evidence.faces
        assert s.evidence.speech is not None and s.fast_label
        want = folds.get(("toy", s.meta["speaker"]), real_cues.speaker_fold("toy", s.meta["speaker"], folds=3))
        assert s.meta["fold"] == want  # the voice head's own speaker folds when that module is there
    assert json.loads((out / "summary.json").read_text())["test"]["n"] == len(test) == summary["test"]["n"]

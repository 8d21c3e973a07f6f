"""`affectstream train voice` end to end on a tiny generated corpus (real Whisper encoder, real torch
training, real ONNX export), and its one-line errors. The corpus is synthetic on purpose: CI has no
emotional speech; what is tested is the pipeline, not the accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from affectstream.engine.labels import EMOTIONS

pytest.importorskip("torch", reason="training needs the 'train' extra")
pytest.importorskip("faster_whisper", reason="the encoder needs faster-whisper")

SR = 16_000


def tone(f0: float, seconds: float, rng: np.random.Generator, am: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * am * t)) + rng.normal(0, 0.01, len(t))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


def make_corpus(root: Path, speakers: int = 4, per_class: int = 1) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(speakers):
        for ci, lab in enumerate(EMOTIONS):
            for k in range(per_class):
                rel = Path("synth") / f"spk{s}" / f"{lab}_{k}.flac"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, tone(110 + 35 * ci + 7 * s, 1.2 + 0.3 * k, rng, 2 + ci), SR)
                rows.append({"file": str(rel), "label": lab, "dataset": "synth", "speaker": f"spk{s}"})
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "label", "dataset", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_train_voice_end_to_end(tmp_path, lite_profile):
    from affectstream.engine.models.voice_emotion import read_head_info
    from affectstream.engine.runtimes.onnx import OrtRuntime
    from affectstream.train.voice.cli import run

    data = make_corpus(tmp_path / "data")
    out = tmp_path / "out"
    rep = run(data, out=out, cache=tmp_path / "cache", profile=lite_profile, folds=2, epochs=3)
    assert rep["data"]["clips"] == 28 and rep["data"]["speaker_groups"] == 4
    assert rep["protocol"]["split"].startswith("speaker-disjoint")
    cv = rep["cv"]
    assert cv["n"] == 28 and 0 <= cv["uar"] <= 100 and cv["temperature"] > 0
    assert set(cv["rows"]) >= {"voice head", "majority class", "probe: LR on mean+std"}
    assert cv["per_dataset"]["synth"]["n"] == 28
    assert np.asarray(cv["confusion"]).sum() == 28
    folds = [set(v) for v in cv["folds"].values()]
    assert not folds[0] & folds[1]  # no speaker on both sides
    saved = json.loads((out / "report.json").read_text())
    assert saved["head"]["sha256"] == rep["head"]["sha256"]
    assert (out / "confusion.png").stat().st_size > 1000
    assert (out / "config.toml").is_file() and (out / "fold0_test.csv").is_file()
    for f in range(2):  # every fold's head, each marked with the fold it never heard
        assert read_head_info(out / f"voice_emotion_fold{f}.onnx").extra == {"holdout_fold": f}

    info = read_head_info(out / "voice_emotion.onnx")
    assert info.labels == EMOTIONS and info.temperature == pytest.approx(cv["temperature"], rel=1e-3)
    assert info.context_s == 4.0 and info.cv_uar == cv["uar"]  # the default config: first 4 s ...
    assert (info.chunk_s, info.stride_s) == (2.0, 1.0)  # ... in 2 s pieces 1 s apart, as streams encode
    assert "2 s pieces" in rep["protocol"]["input"]
    rt = OrtRuntime(out / "voice_emotion.onnx")
    x = np.random.default_rng(1).normal(0, 1, (3, 60, 512)).astype(np.float32)
    mask = np.ones((3, 60), np.float32)
    mask[1, 30:] = 0
    p = rt.run({"frames": x, "mask": mask})["probs"]
    assert p.shape == (3, 7) and np.allclose(p.sum(1), 1, atol=1e-5)
    # masked frames do not count: changing them changes nothing
    x2 = x.copy()
    x2[1, 30:] = 100.0
    assert np.allclose(rt.run({"frames": x2, "mask": mask})["probs"][1], p[1], atol=1e-5)

    # features are cached: a second run extracts nothing
    rep2 = run(
        data,
        out=tmp_path / "out2",
        cache=tmp_path / "cache",
        profile=lite_profile,
        folds=2,
        epochs=1,
        cv=False,
    )
    assert "cv" not in rep2 and (tmp_path / "out2" / "voice_emotion.onnx").is_file()


def test_user_csv_without_speakers_is_clip_wise(tmp_path):
    from affectstream.train.voice.data import load_clips, speaker_folds

    make_corpus(tmp_path / "d", speakers=1)
    user = tmp_path / "mine.csv"
    user.write_text("path,label\n" + "".join(f"d/synth/spk0/{e}_0.flac,{e}\n" for e in EMOTIONS))
    clips = load_clips(None, user)
    assert len(clips) == 7 and all(c.dataset == "user" and not c.speaker for c in clips)
    fold = speaker_folds(clips, k=2)
    assert set(fold) == {0, 1}


@pytest.mark.parametrize(
    "content, needle",
    [
        ("path,label\nx.flac,happy\n", "not found"),
        ("path,label\nsynth/spk0/angry_0.flac,furious\n", "not one of"),
        ("path,emotion\nsynth/spk0/angry_0.flac,angry\n", "needs columns"),
    ],
)
def test_bad_labels_are_one_line_exit_2(tmp_path, capsys, content, needle):
    from affectstream.train.voice.cli import main

    make_corpus(tmp_path, speakers=1)
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    rc = main(SimpleNamespace(data=tmp_path, labels=bad, config=None, out=tmp_path / "o"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1


def test_too_few_speakers_for_the_folds(tmp_path, capsys):
    from affectstream.train.voice.data import DataError, load_clips, speaker_folds

    make_corpus(tmp_path, speakers=2)
    with pytest.raises(DataError, match="speaker groups"):
        speaker_folds(load_clips(tmp_path), k=5)


def test_stream_cuts_are_what_the_windows_hear():
    """`streamN` training rows: the last N s up to each 2 s / 1 s-hop window's end, the last window
    ending at the clip's end; a clip shorter than a window is one cut."""
    from affectstream.train.voice.features import stream_cuts

    x = np.arange(int(5.5 * SR), dtype=np.float32)
    cuts = stream_cuts(x, 4.0)
    assert [(int(c[0]), len(c)) for c in cuts] == [
        (0, 2 * SR),
        (0, 3 * SR),
        (0, 4 * SR),
        (1 * SR, 4 * SR),
        (int(1.5 * SR), 4 * SR),
    ]
    assert all(c[-1] == e - 1 for c, e in zip(cuts, [2 * SR, 3 * SR, 4 * SR, 5 * SR, len(x)], strict=True))
    short = np.ones(SR, np.float32)
    assert [len(c) for c in stream_cuts(short, 4.0)] == [SR]


def test_cross_fitted_cues_score_each_speaker_with_its_own_folds_head(tmp_path, lite_profile):
    """`real_cues --voice-heads`: every clip's voice scores come from the head that never heard its
    speaker (checked against that head run directly), and a missing fold head is one clear error."""
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.types import Window
    from affectstream.train import real_cues
    from affectstream.train.cues import load_jsonl
    from affectstream.train.voice.cli import run

    data = make_corpus(tmp_path / "data")
    heads = tmp_path / "heads"
    run(data, out=heads, cache=tmp_path / "cache", profile=lite_profile, folds=2, epochs=2)
    out = tmp_path / "cues"
    real_cues.build(
        data,
        out,
        per_class=1,
        transcript=False,
        folds=2,
        test_fold=0,
        profile=str(lite_profile),
        voice_heads=heads,
    )
    samples = load_jsonl(out / "train.jsonl") + load_jsonl(out / "test.jsonl")
    assert {s.meta["fold"] for s in samples} == {0, 1}
    assert "cross-fitted" in json.loads((out / "summary.json").read_text())["voice_scores"]
    direct = {
        f: LiteAnalyzer(
            str(lite_profile),
            transcript=False,
            verify=False,
            voice_head=str(heads / f"voice_emotion_fold{f}.onnx"),
        )
        for f in (0, 1)
    }
    rows = {r["file"]: r for r in real_cues.read_labels(data)}
    checked = 0
    for s in samples:
        if not s.evidence.voice_scores:
            continue
        r = next(
            r
            for r in rows.values()
            if f"{r['dataset']}/{Path(r['file']).stem}" == s.id and r["speaker"] == s.meta["speaker"]
        )
        seg, start = real_cues.middle(real_cues.load_audio(data / r["file"]), 2.0)
        own = direct[s.meta["fold"]].analyze(
            Window(f"x{r['file']}", 0, start, start + len(seg) / 16000, [], seg)
        )
        other = direct[1 - s.meta["fold"]].analyze(
            Window(f"y{r['file']}", 0, start, start + len(seg) / 16000, [], seg)
        )
        got = dict(s.evidence.voice_scores)
        top = max(got, key=got.get)
        assert got[top] == pytest.approx(own.voice.scores[top], abs=6e-5)  # stored to 4 places
        checked += abs(own.voice.scores[top] - other.voice.scores[top]) > 0.01
    assert checked > 0  # where the two heads differ, the check above tells them apart
    (heads / "voice_emotion_fold1.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="voice_emotion_fold1"):
        real_cues.build(
            data,
            tmp_path / "c2",
            per_class=1,
            transcript=False,
            folds=2,
            profile=str(lite_profile),
            voice_heads=heads,
        )

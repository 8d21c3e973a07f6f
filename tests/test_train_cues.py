"""The synthetic cue generator: deterministic splits, label-consistent evidence, the flagged subset."""

from __future__ import annotations

import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.llm.prompt import QUESTION
from affectstream.train.cues import (
    PHRASES,
    build_splits,
    generate,
    load_jsonl,
    save_jsonl,
    target_completion,
)
from affectstream.train.rewards import accuracy_reward, format_reward


def test_generation_is_deterministic_and_splits_disjoint() -> None:
    a = [s.to_dict() for s in generate(30, seed=11)]
    b = [s.to_dict() for s in generate(30, seed=11)]
    assert a == b
    sp = build_splits(40, 10, 20)
    assert [len(sp[k]) for k in ("train", "val", "test")] == [40, 10, 20]
    ids = [s.id for k in sp for s in sp[k]]
    assert len(set(ids)) == len(ids)
    prompts = {s.prompt() for s in sp["train"]}
    assert not any(s.prompt() in prompts for s in sp["test"])


def test_evidence_is_consistent_with_label() -> None:
    samples = generate(400, seed=5)
    assert {s.label for s in samples} == set(EMOTIONS)
    clear = [s for s in samples if s.kind == "clear"]
    assert np.mean([s.evidence.faces[0].expressions[0][0] == s.label for s in clear]) > 0.95
    # prosody follows arousal: angry voices are more aroused than sad ones
    ar = {
        k: np.mean([s.evidence.arousal for s in samples if s.label == k and s.evidence.arousal is not None])
        for k in ("angry", "sad")
    }
    assert ar["angry"] > ar["sad"] + 0.3


def test_voice_decides_subset_beats_the_face() -> None:
    samples = generate(400, seed=6)
    vd = [s for s in samples if s.voice_decides]
    assert 0.2 < len(vd) / len(samples) < 0.4
    # words always carry the true label there, while the fusion rule (face + arousal) mostly misses
    assert all(s.evidence.transcript in PHRASES[s.label] for s in vd)
    assert np.mean([s.fast_label == s.label for s in vd]) < 0.3
    others = [s for s in samples if s.kind in ("clear", "confusable")]
    assert np.mean([s.fast_label == s.label for s in others]) > 0.85


def test_targets_earn_full_reward_and_prompt_is_production() -> None:
    for s in generate(50, seed=8):
        t = target_completion(s)
        assert format_reward(t) == 1.0
        assert accuracy_reward(t, s.label) == 1.0
        assert QUESTION in s.prompt()
        assert f"Fast model: {s.fast_label}" in s.prompt()


def test_jsonl_roundtrip(tmp_path) -> None:
    samples = generate(12, seed=9)
    p = tmp_path / "cues.jsonl"
    assert save_jsonl(samples, p) == 12
    back = load_jsonl(p)
    assert [s.prompt() for s in back] == [s.prompt() for s in samples]
    assert [(s.label, s.kind, s.fast_label) for s in back] == [
        (s.label, s.kind, s.fast_label) for s in samples
    ]
    p.write_text('{"id": 1}\n')
    import pytest

    with pytest.raises(ValueError, match=r"cues\.jsonl:1"):
        load_jsonl(p)


def test_sft_selection_filters_real_windows_only_when_asked() -> None:
    """`select_sft_samples`: `n_sft` synthetic + every real window; `sft_consistent_only` filters the
    synthetic ones, `real_consistent_only` the real ones (strongest cue must name the human label);
    `no_speech_share` adds VAD-miss copies of real windows; the same seed gives the same order."""
    import dataclasses

    from affectstream.train.cli import select_sft_samples
    from affectstream.train.cues import consistent

    syn = generate(120, seed=21)
    real = [
        dataclasses.replace(s, kind="real", source="real", id=f"r{i}") for i, s in enumerate(generate(80, 22))
    ]
    bad_real = [s for s in real if not consistent(s)]
    assert bad_real and any(not consistent(s) for s in syn[:60])  # both kinds have something to filter
    pool = syn + real

    keep = select_sft_samples(pool, {"n_sft": 60, "sft_consistent_only": True})
    assert {s.id for s in keep if s.kind == "real"} == {s.id for s in real}  # real windows stay
    assert {s.id for s in keep if s.kind != "real"} == {s.id for s in syn[:60] if consistent(s)}

    both = select_sft_samples(pool, {"n_sft": 60, "sft_consistent_only": True, "real_consistent_only": True})
    assert {s.id for s in both if s.kind == "real"} == {s.id for s in real if consistent(s)}
    assert all(consistent(s) for s in both)

    d = {"n_sft": 60, "real_consistent_only": True, "no_speech_share": 0.5}
    a, b = select_sft_samples(pool, d, seed=3), select_sft_samples(pool, d, seed=3)
    assert [s.id for s in a] == [s.id for s in b]
    copies = [s for s in a if s.id.endswith("#nospeech")]
    spoken = [s for s in real if consistent(s) and s.evidence.speech]
    assert len(copies) == round(0.5 * len(spoken)) and all(s.evidence.speech is False for s in copies)


def test_analyzer_faces_change_only_the_faces() -> None:
    """`analyzer_faces`: faces scored as confidently as the FER model often is, with the face mesh's
    five actions; label, kind, voice and words stay exactly those of the plain sample (own random stream)."""
    from affectstream.train.cues import target_think

    plain, real_like = generate(200, seed=31), generate(200, seed=31, analyzer_faces=True)
    tops = []
    for a, b in zip(plain, real_like, strict=True):
        assert (a.id, a.label, a.kind) == (b.id, b.label, b.kind)
        assert (a.evidence.voice_scores, a.evidence.transcript, a.evidence.arousal) == (
            b.evidence.voice_scores,
            b.evidence.transcript,
            b.evidence.arousal,
        )
        assert len(a.evidence.faces) == len(b.evidence.faces)
        for f in b.evidence.faces:
            assert set(f.actions) == {
                "smile_width",
                "eye_open",
                "brow_raise",
                "mouth_open",
                "mouth_corner_lift",
            }
            tops.append(f.expressions[0][1])
        if b.evidence.faces:
            assert " with " not in target_think(b, "compact")  # compact thinks skip the actions
    assert not any(f.actions for s in plain for f in s.evidence.faces)
    assert sum(t >= 0.95 for t in tops) >= 0.2 * len(tops)
    assert max(f.expressions[0][1] for s in plain for f in s.evidence.faces) < 0.95


def test_analyzer_faces_share() -> None:
    """A float `analyzer_faces` applies to that share of samples; True is the same as 1.0."""
    every = generate(60, seed=32, analyzer_faces=True)
    assert [s.to_dict() for s in every] == [s.to_dict() for s in generate(60, seed=32, analyzer_faces=1.0)]
    half = [s for s in generate(300, seed=32, analyzer_faces=0.5) if s.evidence.faces]
    with_actions = sum(bool(s.evidence.faces[0].actions) for s in half)
    assert 0.35 * len(half) < with_actions < 0.65 * len(half)

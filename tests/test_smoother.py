"""Smoothing, hysteresis and events: properties that must hold for any input, and the event life cycle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.smoother import ExpSmoother, Hysteresis, Smoother, SmootherSettings
from affectstream.engine.types import FaceResult, WindowRef, WindowResult
from affectstream.streams.contract import validate
from hypothesis import given, settings
from hypothesis import strategies as st


def result(i: int, scores: dict[str, float], stream: str = "s", hop: float = 1.0, faces=None) -> WindowResult:
    label = max(scores, key=scores.__getitem__)
    return WindowResult(
        stream, WindowRef(i, i * hop, i * hop + 2.0), label, scores[label], scores, faces=list(faces or [])
    )


def dist(**kw: float) -> dict[str, float]:
    """A distribution over EMOTIONS with the given masses and the rest spread evenly."""
    rest = (1.0 - sum(kw.values())) / (len(EMOTIONS) - len(kw))
    return {k: kw.get(k, rest) for k in EMOTIONS}


score_vectors = st.lists(st.floats(0.001, 1.0), min_size=len(EMOTIONS), max_size=len(EMOTIONS)).map(
    lambda v: {k: x / sum(v) for k, x in zip(EMOTIONS, v, strict=True)}
)


@settings(max_examples=60, deadline=None)
@given(
    seq=st.lists(st.tuples(score_vectors, st.floats(0.05, 3.0)), min_size=1, max_size=40),
    tau=st.floats(0.0, 5.0),
    h=st.floats(0.0, 0.5),
)
def test_published_label_is_never_far_from_the_best(seq, tau: float, h: float) -> None:
    """Hysteresis may hold a label, but never one that trails the leader by `hysteresis` or more."""
    sm = Smoother(SmootherSettings(tau_s=tau, hysteresis=h))
    t = 0.0
    for i, (scores, dt) in enumerate(seq):
        t += dt
        r = WindowResult("s", WindowRef(i, t - 2, t), max(scores, key=scores.get), 0.0, scores)
        up = sm.update(r)
        s = up.state["scores"]
        assert s[up.state["label"]] >= max(s.values()) - h - 1e-3  # 1e-3: payload rounding
        assert all(0.0 <= v <= 1.0 for v in s.values())
        assert math.isclose(sum(s.values()), 1.0, abs_tol=1e-3)  # convex blend of distributions


@settings(max_examples=40, deadline=None)
@given(pairs=st.lists(st.floats(0.0, 0.06), min_size=6, max_size=30))
def test_near_ties_do_not_flicker(pairs) -> None:
    """Raw labels that swap every window (margins < hysteresis) leave the published label alone."""
    sm = Smoother(SmootherSettings(tau_s=1.5, hysteresis=0.1))
    raw_changes = published_changes = 0
    prev_raw = None
    for i, d in enumerate(pairs):
        a, b = (0.45 + d, 0.45 - d) if i % 2 else (0.45 - d - 0.001, 0.45 + d + 0.001)
        up = sm.update(result(i, dist(happy=a, sad=b)))
        raw_changes += prev_raw is not None and up.state["raw_label"] != prev_raw
        prev_raw = up.state["raw_label"]
        published_changes += up.changed and i > 0
    assert raw_changes == len(pairs) - 1
    assert published_changes == 0


@settings(max_examples=40, deadline=None)
@given(tau=st.floats(0.2, 4.0), value=st.floats(0.0, 1.0), n=st.integers(1, 6))
def test_smoothing_depends_on_elapsed_time_not_on_hop(tau: float, value: float, n: int) -> None:
    """A stream analysed with hop 1/n reaches the same smoothed value at the same stream time."""
    coarse, fine = ExpSmoother(tau), ExpSmoother(tau)
    coarse.update({"x": 0.0}, 0.0)
    fine.update({"x": 0.0}, 0.0)
    a = coarse.update({"x": value}, 1.0)["x"]
    for k in range(1, n + 1):
        b = fine.update({"x": value}, k / n)["x"]
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(a, value * (1 - math.exp(-1.0 / tau)), rel_tol=1e-9, abs_tol=1e-12)


def test_step_change_switches_after_a_delay_and_events_tile_the_timeline() -> None:
    sm = Smoother(SmootherSettings(tau_s=1.5, hysteresis=0.1))
    events, switched_at = [], None
    for i in range(20):
        scores = dist(happy=0.8) if i < 10 else dist(sad=0.8)
        up = sm.update(result(i, scores))
        for ev in up.events:
            validate("events", ev)
        validate("state", up.state)
        events += up.events
        if up.changed and i > 0:
            switched_at = i
    events += sm.finish("s")
    assert switched_at is not None and 10 < switched_at <= 12  # smoothed: later than the raw change, not much
    updates = [e for e in events if e["type"] == "update"]
    events = [e for e in events if e["type"] != "update"]
    assert [(e["type"], e["label"]) for e in events] == [
        ("new", "happy"),
        ("end", "happy"),
        ("new", "sad"),
        ("end", "sad"),
    ]
    # While the smoothed sad score climbs towards 0.8, the running event reports it.
    assert updates and all(u["label"] == "sad" for u in updates)
    tops = [u["top_score"] for u in updates]
    assert tops == sorted(tops) and tops[-1] <= events[-1]["top_score"]
    new_h, end_h, new_s, end_s = events
    assert new_h["id"] == end_h["id"] != new_s["id"] == end_s["id"]
    assert end_h["end"] == new_s["start"] == float(switched_at)  # no gap, no overlap
    assert end_s["end"] == 19 + 2.0  # the last window's end
    assert end_h["top_score"] >= 0.79 and new_s["end"] is None
    assert sm.streams == ()


def test_update_event_when_confidence_grows() -> None:
    sm = Smoother(SmootherSettings(tau_s=0.0, hysteresis=0.1, update_delta=0.05))
    types = []
    for i, p in enumerate([0.5, 0.52, 0.6, 0.61, 0.9, 0.7]):
        types += [(e["type"], e.get("score")) for e in sm.update(result(i, dist(happy=p))).events]
    assert types == [("new", 0.5), ("update", 0.6), ("update", 0.9)]


def test_min_hold_requires_a_sustained_lead() -> None:
    sm = Smoother(SmootherSettings(tau_s=0.0, hysteresis=0.1, min_hold_s=2.0))
    labels = []
    seq = ["happy", "sad", "happy", "sad", "sad", "sad", "sad"]
    for i, lab in enumerate(seq):
        labels.append(sm.update(result(i, dist(**{lab: 0.8}))).state["label"])
    # A one-window blip never wins; three windows (2 s on the window clock) of lead do.
    assert labels == ["happy", "happy", "happy", "happy", "happy", "sad", "sad"]


def test_quiet_labels_open_no_event_but_show_in_state() -> None:
    sm = Smoother(SmootherSettings(tau_s=0.0, quiet_labels=("neutral",)))
    evs = []
    for i, lab in enumerate(["neutral", "neutral", "angry", "neutral"]):
        up = sm.update(result(i, dist(**{lab: 0.9})))
        evs += [(e["type"], e["label"]) for e in up.events]
        assert up.state["label"] == lab
    assert evs == [("new", "angry"), ("end", "angry")]


def test_streams_are_independent_and_faces_are_tracked_and_forgotten() -> None:
    sm = Smoother(SmootherSettings(tau_s=1.0, face_ttl_s=2.5))

    def face(track: int, lab: str) -> FaceResult:
        sc = dist(**{lab: 0.9})
        return FaceResult(track, (10, 10, 50, 50), lab, 0.9, sc)

    a = sm.update(result(0, dist(happy=0.9), stream="a", faces=[face(1, "happy"), face(2, "sad")]))
    b = sm.update(result(0, dist(angry=0.9), stream="b"))
    assert (a.state["label"], b.state["label"]) == ("happy", "angry")
    assert [(f["track"], f["label"]) for f in a.state["faces"]] == [(1, "happy"), (2, "sad")]
    for i in range(1, 5):  # track 2 disappears; track 1 stays
        up = sm.update(result(i, dist(happy=0.9), stream="a", faces=[face(1, "happy")]))
    assert [f["track"] for f in up.state["faces"]] == [1]
    validate("state", up.state)
    assert sm.label("b") == "angry"


@pytest.mark.parametrize("bad", [{"tau_s": -1}, {"hysteresis": 1.0}, {"face_ttl_s": 0}])
def test_bad_settings_are_rejected(bad) -> None:
    with pytest.raises(ValueError, match="smoother"):
        SmootherSettings(**bad)


def test_hysteresis_tie_keeps_current_label() -> None:
    h = Hysteresis(margin=0.0)
    h.update({"a": 0.6, "b": 0.4}, 0)
    assert not h.update({"a": 0.5, "b": 0.5}, 1) and h.label == "a"


def test_nan_scores_do_not_poison_the_state() -> None:
    sm = Smoother()
    sm.update(result(0, dist(happy=0.9)))
    up = sm.update(result(1, {**dist(happy=0.9), "sad": float("nan")}))
    assert all(np.isfinite(v) for v in up.state["scores"].values())

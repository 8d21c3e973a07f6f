"""Per-stream smoothing, hysteresis and emotion events: turns noisy per-window labels into a steady state.

Raw window labels flicker (two overlapping windows of the same face can disagree), and a subscriber that
drives a light or a dashboard wants the *current* emotion, not every wobble. So, per stream and per face
track:

* scores are smoothed by an exponential moving average whose weight follows the time that passed on the
  stream's own clock, `alpha = 1 - exp(-dt / tau)`, so the result does not depend on hop size or on
  files being processed faster than real time;
* the published label only changes when a challenger's smoothed score leads the current label's by at
  least `hysteresis` (and, optionally, keeps leading for `min_hold_s`), so near-ties cannot flicker;
* every change of the published label closes the running *event* (`end`) and opens a new one (`new`);
  a running event reports a notably higher `top_score` with `update`, like Frigate's event stream.

Times in `since`/`start`/`end` are stream seconds (window times); `ts` fields are epoch seconds.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from affectstream.engine.types import FaceResult, WindowRef, WindowResult


@dataclass(frozen=True, slots=True)
class SmootherSettings:
    """Knobs of the smoother. Defaults suit 2 s windows with a 1 s hop."""

    tau_s: float = 1.5  # EMA time constant in stream seconds; 0 disables smoothing
    hysteresis: float = 0.10  # a challenger must lead the current label by this much (score units)
    min_hold_s: float = 0.0  # ... and keep leading for this long before the label switches
    face_ttl_s: float = 3.0  # a face track unseen for this long is forgotten
    update_delta: float = 0.05  # an `update` event is sent when top_score grows by this much
    # labels that open no event (e.g. ("neutral",)); the state still shows them
    quiet_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tau_s < 0 or self.hysteresis < 0 or self.min_hold_s < 0 or self.face_ttl_s <= 0:
            raise ValueError("smoother: tau_s, hysteresis and min_hold_s must be >= 0 and face_ttl_s > 0")
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"smoother: hysteresis must be in [0, 1), got {self.hysteresis}")


class ExpSmoother:
    """Exponential moving average of a score dict over irregular time steps."""

    __slots__ = ("scores", "t", "tau")

    def __init__(self, tau_s: float) -> None:
        self.tau = tau_s
        self.scores: dict[str, float] = {}
        self.t: float | None = None

    def update(self, scores: Mapping[str, float], t: float, nominal_dt: float = 1.0) -> dict[str, float]:
        """Blend `scores` observed at stream time `t`; returns the smoothed scores.

        A step back in time (a restarted source) or a repeated time counts as one nominal step, so the
        average keeps moving instead of freezing.
        """
        clean = {k: min(1.0, max(0.0, float(v))) if math.isfinite(v) else 0.0 for k, v in scores.items()}
        if self.t is None or not self.scores:
            self.scores, self.t = clean, t
            return dict(self.scores)
        dt = t - self.t
        if dt <= 0:
            dt = max(nominal_dt, 1e-3)
        alpha = 1.0 if self.tau == 0 else 1.0 - math.exp(-dt / self.tau)
        keys = self.scores.keys() | clean.keys()
        self.scores = {k: (1 - alpha) * self.scores.get(k, 0.0) + alpha * clean.get(k, 0.0) for k in keys}
        self.t = t
        return dict(self.scores)


class Hysteresis:
    """Holds a label until a challenger leads it by `margin` for `hold_s`."""

    __slots__ = ("hold_s", "label", "lead_label", "lead_since", "margin")

    def __init__(self, margin: float, hold_s: float = 0.0) -> None:
        self.margin = margin
        self.hold_s = hold_s
        self.label: str | None = None
        self.lead_label: str | None = None
        self.lead_since: float = 0.0

    def update(self, scores: Mapping[str, float], t: float) -> bool:
        """Feed smoothed scores at stream time `t`; True when the held label changed."""
        if not scores:
            return False
        best = max(scores, key=lambda k: (scores[k], k == self.label))
        if self.label is None:
            self.label = best
            return True
        if best == self.label or scores[best] - scores.get(self.label, 0.0) < self.margin:
            self.lead_label = None
            return False
        if self.lead_label != best:
            self.lead_label, self.lead_since = best, t
        if t - self.lead_since >= self.hold_s:
            self.label, self.lead_label = best, None
            return True
        return False


@dataclass(slots=True)
class _Track:
    ema: ExpSmoother
    hyst: Hysteresis
    box: tuple[int, int, int, int]
    last_seen: float


@dataclass(slots=True)
class _Event:
    id: str
    label: str
    start: float
    top_score: float


@dataclass(slots=True)
class SmoothedUpdate:
    """What one window produced: the retained `state` payload and zero or more `events` payloads."""

    state: dict[str, Any]
    events: list[dict[str, Any]]
    changed: bool  # the published label changed with this window


@dataclass(slots=True)
class _StreamState:
    ema: ExpSmoother
    hyst: Hysteresis
    since: float = 0.0
    windows: int = 0
    last_window: WindowRef | None = None
    event: _Event | None = None
    tracks: dict[int, _Track] = field(default_factory=dict)


def _event_id(ts: float) -> str:
    """Frigate-style id: epoch time plus a random suffix, unique across restarts and nodes."""
    return f"{ts:.6f}-{secrets.token_hex(3)}"


def _r(v: float) -> float:
    return round(float(v), 4)


class Smoother:
    """Smoothed state and events for any number of streams; not thread-safe (one event loop owns it)."""

    def __init__(self, settings: SmootherSettings | None = None) -> None:
        self.settings = settings or SmootherSettings()
        self._streams: dict[str, _StreamState] = {}

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self._streams)

    def label(self, stream: str) -> str | None:
        st = self._streams.get(stream)
        return None if st is None else st.hyst.label

    def update(self, result: WindowResult) -> SmoothedUpdate:
        """Fold one window result into its stream's state; returns the new state and any events."""
        s = self.settings
        st = self._streams.get(result.stream)
        if st is None:
            st = _StreamState(ExpSmoother(s.tau_s), Hysteresis(s.hysteresis, s.min_hold_s))
            self._streams[result.stream] = st
        w = result.window
        t = w.end
        nominal = (
            max(1e-3, w.end - w.start) if st.last_window is None else max(1e-3, w.end - st.last_window.end)
        )
        smoothed = st.ema.update(result.scores or {result.label: result.score}, t, nominal)
        changed = st.hyst.update(smoothed, t)
        label = st.hyst.label or result.label
        score = smoothed.get(label, 0.0)
        events: list[dict[str, Any]] = []
        if changed:
            events.extend(self._switch(result.stream, st, label, score, w))
            st.since = w.start
        elif st.event is not None and score >= st.event.top_score + s.update_delta:
            st.event.top_score = score
            events.append(self._event_payload("update", result.stream, st.event, None, score, w))
        st.windows += 1
        st.last_window = w
        faces = self._update_faces(st, result.faces, t, nominal)
        state = {
            "schema": "affectstream.state/1",
            "stream": result.stream,
            "ts": round(result.ts, 3),
            "profile": result.profile,
            "label": label,
            "score": _r(score),
            "scores": {k: _r(v) for k, v in smoothed.items()},
            "since": round(st.since, 3),
            "event_id": None if st.event is None else st.event.id,
            "raw_label": result.label,
            "raw_score": _r(result.score),
            "window": w.to_dict(),
            "windows": st.windows,
            "faces": faces,
        }
        return SmoothedUpdate(state, events, changed)

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Seed a stream from its last retained `state` payload.

        A stream restarted elsewhere (another process or node) resumes smoothing where it stopped
        instead of starting cold: the label, its `since`, the running event (same id, so its `end`
        closes the right episode) and the face tracks carry over. False if `state` is not usable.
        """
        s = self.settings
        try:
            stream = str(state["stream"])
            raw = state["scores"]
            w = state["window"]
            ref = WindowRef(int(w["index"]), float(w["start"]), float(w["end"]))
            label = str(state["label"])
            scores = {str(k): min(1.0, max(0.0, float(v))) for k, v in raw.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        st = _StreamState(ExpSmoother(s.tau_s), Hysteresis(s.hysteresis, s.min_hold_s))
        st.ema.scores, st.ema.t = scores, ref.end
        st.hyst.label = label
        st.since = float(state.get("since", ref.start) or ref.start)
        st.windows = int(state.get("windows", 0) or 0)
        st.last_window = ref
        if state.get("event_id") and label not in s.quiet_labels:
            st.event = _Event(str(state["event_id"]), label, st.since, float(state.get("score", 0.0) or 0.0))
        for f in state.get("faces") or []:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                tr = _Track(ExpSmoother(s.tau_s), Hysteresis(s.hysteresis, s.min_hold_s), tuple(f["box"]), ref.end)
                tr.ema.scores = {str(k): float(v) for k, v in f["scores"].items()}
                tr.ema.t = ref.end
                tr.hyst.label = str(f["label"]) or None
                st.tracks[int(f["track"])] = tr
        self._streams[stream] = st
        return True

    def finish(self, stream: str) -> list[dict[str, Any]]:
        """The stream ended: close its open event (`end` at the last window's end) and forget it."""
        st = self._streams.pop(stream, None)
        if st is None or st.event is None or st.last_window is None:
            return []
        ev, st.event = st.event, None
        return [self._event_payload("end", stream, ev, st.last_window.end, None, st.last_window)]

    def finish_all(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for stream in list(self._streams):
            out.extend(self.finish(stream))
        return out

    def _switch(
        self, stream: str, st: _StreamState, label: str, score: float, w: WindowRef
    ) -> Iterable[dict[str, Any]]:
        # Consecutive events tile the stream's timeline: the old one ends where the new one starts.
        if st.event is not None:
            yield self._event_payload("end", stream, st.event, w.start, None, w)
            st.event = None
        if label not in self.settings.quiet_labels:
            st.event = _Event(_event_id(time.time()), label, w.start, score)
            yield self._event_payload("new", stream, st.event, None, score, w)

    @staticmethod
    def _event_payload(
        kind: str, stream: str, ev: _Event, end: float | None, score: float | None, w: WindowRef
    ) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": "affectstream.events/1",
            "type": kind,
            "stream": stream,
            "ts": round(time.time(), 3),
            "id": ev.id,
            "label": ev.label,
            "start": round(ev.start, 3),
            "end": None if end is None else round(end, 3),
            "top_score": _r(ev.top_score),
            "window": w.to_dict(),
        }
        if score is not None:
            d["score"] = _r(score)
        return d

    def _update_faces(
        self, st: _StreamState, faces: list[FaceResult], t: float, nominal: float
    ) -> list[dict[str, Any]]:
        s = self.settings
        for f in faces:
            tr = st.tracks.get(f.track)
            if tr is None:
                tr = _Track(ExpSmoother(s.tau_s), Hysteresis(s.hysteresis, s.min_hold_s), f.box, t)
                st.tracks[f.track] = tr
            sm = tr.ema.update(f.scores or {f.label: f.score}, t, nominal)
            tr.hyst.update(sm, t)
            tr.box, tr.last_seen = f.box, t
        for track in [k for k, tr in st.tracks.items() if t - tr.last_seen > s.face_ttl_s]:
            del st.tracks[track]
        out = []
        for track, tr in sorted(st.tracks.items()):
            label = tr.hyst.label or ""
            out.append(
                {
                    "track": track,
                    "box": [int(v) for v in tr.box],
                    "label": label,
                    "score": _r(tr.ema.scores.get(label, 0.0)),
                    "scores": {k: _r(v) for k, v in tr.ema.scores.items()},
                }
            )
        return out

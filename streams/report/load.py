"""Read what `affectstream run --jsonl` wrote into per-stream timelines.

Lines are recognised by their `schema` (the JSONL sink also writes `kind`, but a file assembled from MQTT
payloads has only the schema), so the same reader serves both. A damaged line (a run killed mid-write)
is skipped and counted rather than failing the whole report; a file with no window at all is an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affectstream.engine.labels import EMOTIONS


class ReportError(ValueError):
    """The input cannot make a report (one line naming the file and the reason)."""


@dataclass
class StreamTimeline:
    """One stream's windows in order, with the reasoning and events that belong to it."""

    stream: str
    windows: list[dict[str, Any]] = field(default_factory=list)
    reasoning: dict[int, dict[str, Any]] = field(default_factory=dict)  # by window index, latest wins
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Class names in display order: the seven emotions first, then any other class a profile used."""
        seen: list[str] = list(EMOTIONS)
        for w in self.windows:
            for k in w.get("scores") or {}:
                if k not in seen:
                    seen.append(k)
        return seen

    @property
    def start(self) -> float:
        return min(float(w["window"]["start"]) for w in self.windows) if self.windows else 0.0

    @property
    def end(self) -> float:
        return max(float(w["window"]["end"]) for w in self.windows) if self.windows else 0.0

    def spans(self) -> list[tuple[float, float]]:
        """The stretch of time each window speaks for: from its start to the next window's start.

        Windows overlap (2 s long, 1 s apart), so counting whole windows would count time twice; this
        tiles the recording instead, the last window keeping its own end.
        """
        out: list[tuple[float, float]] = []
        for i, w in enumerate(self.windows):
            s, e = float(w["window"]["start"]), float(w["window"]["end"])
            if i + 1 < len(self.windows):
                e = max(s, min(e, float(self.windows[i + 1]["window"]["start"])))
            out.append((s, e))
        return out

    def summary(self) -> dict[str, Any]:
        """Time share per label, faces/speech coverage, reasoning and event counts."""
        spans = self.spans()
        total = sum(e - s for s, e in spans) or 1.0
        share: dict[str, float] = dict.fromkeys(self.labels, 0.0)
        faces_t = speech_t = 0.0
        for w, (s, e) in zip(self.windows, spans, strict=True):
            d = e - s
            share[w["label"]] = share.get(w["label"], 0.0) + d
            if w.get("faces"):
                faces_t += d
            if (w.get("voice") or {}).get("speech"):
                speech_t += d
        valid = sum(1 for r in self.reasoning.values() if r.get("valid"))
        episodes = [e for e in self.events if e.get("type") == "new"]
        return {
            "windows": len(self.windows),
            "duration_s": round(self.end - self.start, 2),
            "share": {k: v / total for k, v in share.items()},
            "dominant": max(share, key=lambda k: share[k]) if self.windows else None,
            "faces_share": faces_t / total,
            "speech_share": speech_t / total,
            "reasoning": len(self.reasoning),
            "reasoning_valid": valid,
            "episodes": len(episodes),
        }


@dataclass
class Results:
    streams: dict[str, StreamTimeline]
    skipped: int = 0  # lines that were not JSON or not an affectstream payload
    expired: int = 0  # results left out because they are older than the retention limit
    source: str = ""


def from_records(
    records: Iterable[dict[str, Any]], *, max_age_s: float | None = None, now: float | None = None
) -> Results:
    """Group payloads by stream. With `max_age_s`, payloads whose `ts` is older are left out (retention)."""
    cutoff = None if max_age_s is None else (time.time() if now is None else now) - max_age_s
    streams: dict[str, StreamTimeline] = {}
    skipped = expired = 0
    for rec in records:
        if not isinstance(rec, dict):
            skipped += 1
            continue
        schema = str(rec.get("schema", ""))
        kind = schema.split("/", 1)[0].removeprefix("affectstream.")
        if kind not in ("window", "reasoning", "events", "state", "stats"):
            skipped += 1
            continue
        if kind in ("state", "stats"):
            continue  # the report is drawn from windows; state/stats add nothing a reader needs
        if cutoff is not None and float(rec.get("ts") or 0) < cutoff:
            expired += 1
            continue
        sid = rec.get("stream")
        if not isinstance(sid, str) or not sid:
            skipped += 1
            continue
        tl = streams.setdefault(sid, StreamTimeline(sid))
        try:
            if kind == "window":
                int(rec["window"]["index"])
                float(rec["window"]["start"]), float(rec["window"]["end"])
                if not isinstance(rec.get("scores"), dict) or not isinstance(rec.get("label"), str):
                    raise TypeError("scores/label")
                tl.windows.append(rec)
            elif kind == "reasoning":
                tl.reasoning[int(rec["window"]["index"])] = rec
            else:
                tl.events.append(rec)
        except (KeyError, TypeError, ValueError):
            skipped += 1
    for tl in streams.values():
        # a window index is unique per stream; a resumed or appended file may repeat one: keep the last
        by_index = {int(w["window"]["index"]): w for w in tl.windows}
        tl.windows = [by_index[i] for i in sorted(by_index)]
    return Results({k: v for k, v in sorted(streams.items()) if v.windows}, skipped, expired)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a file, and how many lines were not JSON."""
    records: list[dict[str, Any]] = []
    bad = 0
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    bad += 1
    except FileNotFoundError:
        raise ReportError(f"report: {path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"report: {path} is a directory; give the JSONL file of a run") from None
    except OSError as e:
        raise ReportError(f"report: cannot read {path}: {e.strerror or e}") from None
    return records, bad


def load_results(path: str | Path, *, max_age_s: float | None = None, now: float | None = None) -> Results:
    """Read a JSONL results file; raises `ReportError` when it holds no window to draw."""
    p = Path(path).expanduser()
    records, bad = read_jsonl(p)
    res = from_records(records, max_age_s=max_age_s, now=now)
    res.skipped += bad
    res.source = str(p)
    if not res.streams:
        why = (
            f"all {res.expired} result(s) are older than the retention limit"
            if res.expired
            else "no window results in it (was it written by `affectstream run --jsonl`?)"
        )
        raise ReportError(f"report: {p}: {why}")
    return res

"""The timeline report: reading a run's JSONL, what the page and the PNG contain, retention, the CLI.

Payloads are built with the engine's own result types (`WindowResult.to_payload`) and validated against
the shipped schemas, so the reader is tested on exactly what `run --jsonl` writes; the browser test of
the page drawn from a real run is in tests/test_ops_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.types import FaceResult, ReasoningResult, VoiceResult, WindowRef, WindowResult
from affectstream.streams.contract import validate
from affectstream.streams.report.html import render_html
from affectstream.streams.report.load import ReportError, from_records, load_results
from affectstream.streams.retention import is_affectstream_output, prune_outputs

ROOT = Path(__file__).resolve().parents[1]


def _scores(top: str, p: float) -> dict[str, float]:
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return {e: (p if e == top else rest) for e in EMOTIONS}


def window(
    stream: str, i: int, label: str, *, faces: int = 1, speech: float = 0.5, ts: float | None = None
) -> dict:
    sc = _scores(label, 0.7)
    face = FaceResult(1, (10, 10, 60, 60), label, 0.7, sc)
    res = WindowResult(
        stream,
        WindowRef(i, float(i), float(i) + 2.0),
        label,
        0.7,
        sc,
        faces=[face] * faces,
        voice=VoiceResult(speech=speech > 0, speech_ratio=speech),
        latency_ms={"fast_path": 40.0},
    )
    if ts is not None:
        res.ts = ts
    return {"kind": "window", **res.to_payload()}


def reasoning(stream: str, i: int, think: str, answer: str | None) -> dict:
    r = ReasoningResult(
        stream, WindowRef(i, float(i), i + 2.0), think, answer, answer is not None, "m", 900.0
    )
    return {"kind": "reasoning", **r.to_payload()}


def event(stream: str, kind: str, eid: str, label: str, start: float, end: float | None, top: float) -> dict:
    return {"kind": "events", "schema": "affectstream.events/1", "type": kind, "stream": stream, "ts": time.time(),
            "id": eid, "label": label, "start": start, "end": end, "top_score": top}  # fmt: skip


def recording() -> list[dict[str, Any]]:
    """Two streams: `door` is happy for windows 0-5 then sad 6-9; `desk` is neutral, 4 windows."""
    recs: list[dict[str, Any]] = []
    for i in range(10):
        recs.append(window("door", i, "happy" if i < 6 else "sad", faces=1 if i % 2 else 2, speech=0.1 * i))
    for i in range(4):
        recs.append(window("desk", i, "neutral", faces=0, speech=0.0))
    recs.append(reasoning("door", 2, "A broad smile </script><b>bold</b> & bright voice", "happy"))
    recs.append(reasoning("door", 7, "garbled", None))
    recs.append(event("door", "new", "e1", "happy", 0.0, None, 0.6))
    recs.append(event("door", "end", "e1", "happy", 0.0, 6.0, 0.7))
    recs.append(event("door", "new", "e2", "sad", 6.0, None, 0.65))
    return recs


def write_jsonl(path: Path, recs: list[dict[str, Any]], extra: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + extra)
    return path


def test_fixture_payloads_follow_the_contract() -> None:
    for r in recording():
        validate(r["kind"], {k: v for k, v in r.items() if k != "kind"})


def test_reader_groups_orders_and_counts(tmp_path: Path) -> None:
    recs = recording()
    recs.insert(0, recs.pop(5))  # out of order on disk
    recs.append(window("door", 3, "angry"))  # a repeated index (appended file): the last one wins
    f = write_jsonl(tmp_path / "r.jsonl", recs, 'not json\n{"schema": "other/1"}\n')
    res = load_results(f)
    assert list(res.streams) == ["desk", "door"]
    door = res.streams["door"]
    assert [w["window"]["index"] for w in door.windows] == list(range(10))
    assert door.windows[3]["label"] == "angry"
    assert res.skipped == 2
    assert set(door.reasoning) == {2, 7} and len(door.events) == 3


def test_summary_tiles_overlapping_windows() -> None:
    door = from_records(recording()).streams["door"]
    s = door.summary()
    # 2 s windows every 1 s: each window speaks for 1 s, the last for its full 2 s -> 11 s in all
    assert s["duration_s"] == 11.0
    assert s["share"]["happy"] == pytest.approx(6 / 11) and s["share"]["sad"] == pytest.approx(5 / 11)
    assert s["dominant"] == "happy"
    assert s["speech_share"] == pytest.approx(10 / 11)  # window 0 has speech_ratio 0
    assert s["reasoning"] == 2 and s["reasoning_valid"] == 1 and s["episodes"] == 2


def test_html_is_self_contained_and_draws_every_window() -> None:
    res = from_records(recording())
    page = render_html(res)
    assert len(re.findall(r'<rect class="win" ', page)) == 14
    assert len(re.findall(r'<section class="stream"', page)) == 2
    # nothing is fetched: no external URL in any src/href, and a CSP that forbids it anyway
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
    assert "default-src 'none'" in page
    # reasoning text is escaped in markup and cannot close the data script early
    assert "<b>bold</b>" not in page and page.count("</script>") == page.count("<script")
    data = re.search(r'<script type="application/json" id="data-svg-1">(.*?)</script>', page, re.S)
    assert data is not None
    hover = json.loads(data.group(1))
    assert "</script>" in hover["reasons"]["2"]["think"] and hover["reasons"]["7"]["valid"] is False
    assert len(hover["rows"]) == 10
    # the share table lists happy first for door, with 54.5 %
    door = page[page.index('data-stream="door"') :]
    assert re.search(r'data-label="happy".*?54\.5 %', door, re.S)


def test_png_shows_each_stream(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from affectstream.streams.report.png import render_png
    from PIL import Image

    out = render_png(from_records(recording()), tmp_path / "t.png")
    img = Image.open(out)
    assert img.width > 800 and img.height > 400
    assert is_affectstream_output(out)
    # the door stream's label band turns from happy (yellow) to sad (blue) about 6/11 of the way
    px = img.convert("RGB")
    w, _h = px.size
    rows = [y for y in range(img.height) if px.getpixel((w // 3, y)) == (245, 197, 24)]
    assert rows, "no happy-coloured pixels"


def test_retention_leaves_out_old_results_and_deletes_only_our_old_files(tmp_path: Path) -> None:
    now = time.time()
    old = [window("door", i, "happy", ts=now - 3 * 3600) for i in range(3)]
    new = [window("door", i, "sad", ts=now - 60) for i in range(3, 6)]
    res = from_records(old + new, max_age_s=2 * 3600, now=now)
    assert [w["window"]["index"] for w in res.streams["door"].windows] == [3, 4, 5] and res.expired == 3

    ours = write_jsonl(tmp_path / "old.jsonl", old)
    page = tmp_path / "old.html"
    page.write_text(render_html(from_records(old)))
    theirs = tmp_path / "notes.jsonl"
    theirs.write_text('{"hello": 1}\n')
    other_html = tmp_path / "index.html"
    other_html.write_text("<html>mine</html>")
    recent = write_jsonl(tmp_path / "recent.jsonl", new)
    for p in (ours, page, theirs, other_html):
        os.utime(p, (now - 5 * 3600, now - 5 * 3600))
    deleted = prune_outputs(tmp_path, 2 * 3600, now=now)
    assert sorted(p.name for p in deleted) == ["old.html", "old.jsonl"]
    assert theirs.exists() and other_html.exists() and recent.exists()


def test_all_expired_is_one_clear_error(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "r.jsonl", [window("door", 0, "happy", ts=time.time() - 7200)])
    with pytest.raises(ReportError, match="older than the retention limit"):
        load_results(f, max_age_s=3600)
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"schema": "affectstream.stats/1", "stream": null, "ts": 1}\n')
    with pytest.raises(ReportError, match="no window results"):
        load_results(empty)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "affectstream.engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_cli_report_writes_html_and_png(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "run.jsonl", recording())
    p = _cli("report", str(f), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "2 stream(s), 14 windows" in p.stdout
    html = tmp_path / "run.html"
    assert html.stat().st_size > 5000 and html.read_text().count('<rect class="win"') == 14
    assert (tmp_path / "run.png").stat().st_size > 10_000
    # retention from the config file: the report is written, the results are all too old
    cfg = tmp_path / "a.toml"
    cfg.write_text("[privacy]\nretention_hours = 0.0001\n")
    time.sleep(0.5)
    p = _cli("report", str(f), "--config", str(cfg), "-o", str(tmp_path / "x.html"), cwd=tmp_path)
    assert p.returncode == 2 and "older than the retention limit" in p.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "no such file"),
        (["."], "is a directory"),
        (["run.jsonl", "-o", "nowhere/x.html"], "does not exist"),
        (["run.jsonl", "-o", "."], "is a directory"),
    ],
)
def test_cli_report_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    write_jsonl(tmp_path / "run.jsonl", recording())
    p = _cli("report", *args, cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1

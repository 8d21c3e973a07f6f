"""One self-contained HTML page per results file: a timeline per stream, drawn server-side as SVG.

Why server-side SVG and inline everything: the page is mailed, archived and opened on machines without
network access, and a results file can hold personal data, so the page must not fetch anything (a
Content-Security-Policy of `default-src 'none'` makes the browser enforce that). The only script is a
small inline one for hover tooltips; every number is already in the markup.

Per stream: a stacked area of the class scores, a band of the window labels (one `rect.win` per window),
lanes for the face count and the speech share, markers where reasoning exists (its text on hover), and
a summary (time share per class, faces/speech coverage, emotion episodes from the `events`).
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from affectstream.streams.report.load import Results, StreamTimeline

GENERATOR = "affectstream-report"

COLORS: dict[str, str] = {
    "angry": "#e5484d",
    "disgust": "#7cb342",
    "fear": "#9b6bff",
    "happy": "#f5c518",
    "sad": "#3b9ee8",
    "surprise": "#ff8a3d",
    "neutral": "#9aa7b4",
}
_EXTRA = ["#00a3a3", "#c2185b", "#6d4c41", "#5c6bc0", "#afb42b", "#8e24aa"]

# SVG geometry (user units; the SVG scales to the page width)
W = 1000
LEFT = 78  # lane titles
RIGHT = 12
PLOT_W = W - LEFT - RIGHT
AREA_Y, AREA_H = 8, 170
BAND_Y, BAND_H = AREA_Y + AREA_H + 8, 16
FACE_Y, FACE_H = BAND_Y + BAND_H + 8, 22
SPEECH_Y, SPEECH_H = FACE_Y + FACE_H + 6, 22
REASON_Y = SPEECH_Y + SPEECH_H + 12
AXIS_Y = REASON_Y + 14
H = AXIS_Y + 22


def color_of(label: str, labels: list[str]) -> str:
    if label in COLORS:
        return COLORS[label]
    extra = [k for k in labels if k not in COLORS]
    return _EXTRA[extra.index(label) % len(_EXTRA)] if label in extra else "#777"


def _fmt_t(t: float) -> str:
    t = max(0.0, t)
    m, s = divmod(round(t), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _tick_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 12:
            return float(step)
    return 14400.0


def _esc(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _normalised(scores: dict[str, Any], labels: list[str]) -> list[float]:
    v = [max(0.0, float(scores.get(k) or 0.0)) for k in labels]
    total = sum(v)
    return [x / total for x in v] if total > 0 else [0.0] * len(v)


def _svg(tl: StreamTimeline, sid: int) -> str:
    labels = tl.labels
    t0, t1 = tl.start, tl.end
    span = max(1e-6, t1 - t0)

    def x(t: float) -> float:
        return LEFT + (t - t0) / span * PLOT_W

    spans = tl.spans()
    mids = [(s + e) / 2 for s, e in spans]
    parts: list[str] = [
        f'<svg class="timeline" id="svg-{sid}" viewBox="0 0 {W} {H}" preserveAspectRatio="none" '
        f'role="img" aria-label="emotion timeline of {_esc(tl.stream)}" data-stream="{_esc(tl.stream)}">'
    ]
    # lane titles
    for y, text in (
        (AREA_Y + AREA_H / 2, "scores"),
        (BAND_Y + BAND_H - 4, "label"),
        (FACE_Y + FACE_H - 6, "faces"),
        (SPEECH_Y + SPEECH_H - 6, "speech"),
        (REASON_Y + 4, "reasoning"),
    ):
        parts.append(f'<text class="lane" x="{LEFT - 8}" y="{y:.1f}" text-anchor="end">{text}</text>')
    parts.append(f'<rect class="plotbg" x="{LEFT}" y="{AREA_Y}" width="{PLOT_W}" height="{AREA_H}"/>')

    # stacked areas: each class between the running sums below and above it, at window midpoints
    norm = [_normalised(w.get("scores") or {}, labels) for w in tl.windows]
    # hold the first and last windows' scores out to the recording's edges
    xs = [x(t0), *(x(m) for m in mids), x(t1)]
    norm = [norm[0], *norm, norm[-1]]
    below = [0.0] * len(xs)
    for k, label in enumerate(labels):
        above = [b + n[k] for b, n in zip(below, norm, strict=True)]
        if max(n[k] for n in norm) > 0:

            def y(v: float) -> float:
                return AREA_Y + AREA_H * (1 - v)

            top = " ".join(f"{xi:.2f},{y(a):.2f}" for xi, a in zip(xs, above, strict=True))
            bottom = " ".join(
                f"{xi:.2f},{y(b):.2f}" for xi, b in zip(reversed(xs), reversed(below), strict=True)
            )
            parts.append(
                f'<polygon class="area" data-label="{_esc(label)}" fill="{color_of(label, labels)}" '
                f'points="{top} {bottom}"/>'
            )
        below = above
    for frac in (0.25, 0.5, 0.75):
        yy = AREA_Y + AREA_H * frac
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}"/>')

    # one label rect per window (what a test counts), then faces and speech lanes
    max_faces = max([len(w.get("faces") or []) for w in tl.windows] + [1])
    band, faces, speech = [], [], []
    for i, (w, (s, e)) in enumerate(zip(tl.windows, spans, strict=True)):
        x0, wd = x(s), max(0.6, x(e) - x(s))
        idx = int(w["window"]["index"])
        band.append(
            f'<rect class="win" data-i="{i}" data-index="{idx}" data-label="{_esc(w["label"])}" '
            f'x="{x0:.2f}" y="{BAND_Y}" width="{wd:.2f}" height="{BAND_H}" '
            f'fill="{color_of(w["label"], labels)}"/>'
        )
        nf = len(w.get("faces") or [])
        if nf:
            hh = FACE_H * nf / max_faces
            faces.append(
                f'<rect class="face" x="{x0:.2f}" y="{FACE_Y + FACE_H - hh:.2f}" width="{wd:.2f}" '
                f'height="{hh:.2f}"/>'
            )
        voice = w.get("voice") or {}
        ratio = float(voice.get("speech_ratio") or (1.0 if voice.get("speech") else 0.0))
        if ratio > 0:
            hh = SPEECH_H * min(1.0, ratio)
            speech.append(
                f'<rect class="speech" x="{x0:.2f}" y="{SPEECH_Y + SPEECH_H - hh:.2f}" width="{wd:.2f}" '
                f'height="{hh:.2f}"/>'
            )
    parts.append(f'<g class="band">{"".join(band)}</g>')
    parts.append(f'<rect class="lanebg" x="{LEFT}" y="{FACE_Y}" width="{PLOT_W}" height="{FACE_H}"/>')
    parts.append(f'<g class="faces">{"".join(faces)}</g>')
    parts.append(f'<rect class="lanebg" x="{LEFT}" y="{SPEECH_Y}" width="{PLOT_W}" height="{SPEECH_H}"/>')
    parts.append(f'<g class="speechlane">{"".join(speech)}</g>')

    # reasoning markers at the windows they explain
    pos = {int(w["window"]["index"]): i for i, w in enumerate(tl.windows)}
    marks = []
    for idx, r in sorted(tl.reasoning.items()):
        i = pos.get(idx)
        t = mids[i] if i is not None else (float(r["window"]["start"]) + float(r["window"]["end"])) / 2
        if not t0 <= t <= t1:
            continue
        cls = "reason" if r.get("valid") else "reason invalid"
        marks.append(f'<circle class="{cls}" data-index="{idx}" cx="{x(t):.2f}" cy="{REASON_Y}" r="4.5"/>')
    parts.append(f'<g class="reasons">{"".join(marks)}</g>')

    # time axis
    step = _tick_step(span)
    first = (int(t0 // step) + (1 if t0 % step else 0)) * step
    ticks = []
    t = first
    while t <= t1 + 1e-9:
        xx = x(t)
        ticks.append(
            f'<line class="tick" x1="{xx:.2f}" x2="{xx:.2f}" y1="{AXIS_Y - 4}" y2="{AXIS_Y}"/>'
            f'<text class="tick" x="{xx:.2f}" y="{AXIS_Y + 13}" text-anchor="middle">{_fmt_t(t)}</text>'
        )
        t += step
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{W - RIGHT}" y1="{AXIS_Y}" y2="{AXIS_Y}"/>')
    parts.append("".join(ticks))
    parts.append(
        f'<line class="cursor" x1="0" x2="0" y1="{AREA_Y}" y2="{AXIS_Y}" visibility="hidden"/></svg>'
    )
    return "".join(parts)


def _hover_data(tl: StreamTimeline) -> dict[str, Any]:
    """What the tooltip script shows, compact: per window its span, label, top scores, faces, speech."""
    rows = []
    for w, (s, e) in zip(tl.windows, tl.spans(), strict=True):
        sc = sorted((w.get("scores") or {}).items(), key=lambda kv: -float(kv[1] or 0))[:3]
        voice = w.get("voice") or {}
        rows.append(
            [
                round(s, 3),
                round(e, 3),
                int(w["window"]["index"]),
                w["label"],
                round(float(w.get("score") or 0), 3),
                [[k, round(float(v or 0), 3)] for k, v in sc],
                len(w.get("faces") or []),
                round(float(voice.get("speech_ratio") or 0), 2),
            ]
        )
    reasons = {
        str(idx): {
            "think": str(r.get("think") or "")[:1200],
            "answer": r.get("answer") if r.get("valid") else None,
            "valid": bool(r.get("valid")),
            "fallback": r.get("fallback_label"),
        }
        for idx, r in tl.reasoning.items()
    }
    return {
        "t0": tl.start,
        "t1": tl.end,
        "left": LEFT,
        "plotw": PLOT_W,
        "w": W,
        "rows": rows,
        "reasons": reasons,
    }


def _episodes(tl: StreamTimeline) -> list[dict[str, Any]]:
    """Emotion episodes from the smoother's events: one row per event id (new … update … end)."""
    by_id: dict[str, dict[str, Any]] = {}
    for ev in tl.events:
        if ev.get("type") not in ("new", "update", "end") or not ev.get("id"):
            continue
        row = by_id.setdefault(
            str(ev["id"]), {"label": ev.get("label"), "start": ev.get("start"), "end": None, "top": 0.0}
        )
        if ev.get("end") is not None:
            row["end"] = ev["end"]
        row["top"] = max(row["top"], float(ev.get("top_score") or 0))
    return sorted(by_id.values(), key=lambda r: float(r["start"] or 0))


def _summary_html(tl: StreamTimeline) -> str:
    s = tl.summary()
    labels = tl.labels
    share_rows = []
    for label, v in sorted(s["share"].items(), key=lambda kv: -kv[1]):
        share_rows.append(
            f'<tr class="share" data-label="{_esc(label)}"><td><i style="background:{color_of(label, labels)}">'
            f'</i>{_esc(label)}</td><td class="bar"><span style="width:{v * 100:.1f}%;background:'
            f'{color_of(label, labels)}"></span></td><td class="num">{v * 100:.1f} %</td></tr>'
        )
    eps = _episodes(tl)
    ep_rows = "".join(
        f'<tr><td><i style="background:{color_of(str(e["label"]), labels)}"></i>{_esc(e["label"])}</td>'
        f'<td class="num">{_fmt_t(float(e["start"] or 0))}</td>'
        f'<td class="num">{_fmt_t(float(e["end"])) if e["end"] is not None else "open"}</td>'
        f'<td class="num">{e["top"]:.2f}</td></tr>'
        for e in eps[:200]
    )
    more = f'<p class="muted">… and {len(eps) - 200} more episodes</p>' if len(eps) > 200 else ""
    facts = (
        f"<li><b>{s['windows']}</b> windows over <b>{_fmt_t(s['duration_s'])}</b></li>"
        f"<li>dominant: <b>{_esc(s['dominant'])}</b></li>"
        f"<li>a face was seen during <b>{s['faces_share'] * 100:.0f} %</b> of the time</li>"
        f"<li>speech during <b>{s['speech_share'] * 100:.0f} %</b> of the time</li>"
        f"<li><b>{s['reasoning']}</b> explained windows ({s['reasoning_valid']} valid)</li>"
        f"<li><b>{s['episodes']}</b> emotion episodes</li>"
    )
    episodes = (
        f'<table class="episodes"><thead><tr><th>episode</th><th>from</th><th>to</th><th>top score</th></tr>'
        f"</thead><tbody>{ep_rows}</tbody></table>{more}"
        if eps
        else '<p class="muted">no events in this file</p>'
    )
    return (
        f'<div class="summary"><div><h3>Time share</h3><table class="shares">{"".join(share_rows)}</table>'
        f'</div><div><h3>Facts</h3><ul class="facts">{facts}</ul></div>'
        f"<div><h3>Episodes</h3>{episodes}</div></div>"
    )


_CSS = """
:root{--bg:#fff;--fg:#1d2329;--muted:#66727f;--panel:#f5f7f9;--line:#d9dee3}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--fg)}header{padding:16px 24px;border-bottom:1px solid var(--line)}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}h3{font-size:13px;text-transform:uppercase;
color:var(--muted);margin:6px 0}.muted{color:var(--muted)}main{padding:8px 24px 24px}
section.stream{background:var(--panel);border-radius:10px;padding:14px 16px;margin:16px 0}
svg.timeline{width:100%;height:auto;display:block;background:#fff;border-radius:6px}
svg .plotbg{fill:#fbfcfd}svg .lanebg{fill:#f3f5f7}svg .grid{stroke:#fff;stroke-opacity:.55;stroke-width:.6}
svg .area{stroke:none;opacity:.92}svg .lane,svg text.tick{font-size:11px;fill:var(--muted)}
svg .face{fill:#4a5a6a}svg .speech{fill:#2e9d6a}svg .reason{fill:#1d2329;cursor:help}
svg .reason.invalid{fill:#fff;stroke:#e5484d;stroke-width:1.5}svg .axis,svg line.tick{stroke:#aab4be}
svg .cursor{stroke:#1d2329;stroke-width:1;stroke-dasharray:3 2}
.legend{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 2px;font-size:12px}
i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:18px;margin-top:10px}
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;text-align:left}th{font-weight:600;color:var(--muted);
font-size:12px}.num{text-align:right;font-variant-numeric:tabular-nums}td.bar{width:45%}
td.bar span{display:block;height:10px;border-radius:3px}.facts{margin:0;padding-left:18px}
.episodes{font-size:12.5px;max-height:none}#tip{position:fixed;pointer-events:none;background:#1d2329;color:#fff;
padding:8px 10px;border-radius:6px;font-size:12px;max-width:420px;white-space:pre-wrap;display:none;z-index:9;
box-shadow:0 3px 12px rgba(0,0,0,.25)}footer{color:var(--muted);font-size:12px;padding:0 24px 24px}
"""

# Tooltip: the window under the pointer (time, label, top scores, faces, speech) and its reasoning.
_JS = r"""
(function(){"use strict";
const tip=document.getElementById("tip");
function fmt(t){t=Math.max(0,Math.round(t));const h=Math.floor(t/3600),m=Math.floor(t%3600/60),s=t%60;
return (h?h+":"+String(m).padStart(2,"0"):m)+":"+String(s).padStart(2,"0");}
document.querySelectorAll("svg.timeline").forEach(function(svg){
const d=JSON.parse(document.getElementById("data-"+svg.id).textContent);
const cur=svg.querySelector(".cursor");
function find(t){let lo=0,hi=d.rows.length-1;while(lo<hi){const m=(lo+hi+1)>>1;if(d.rows[m][0]<=t)lo=m;else hi=m-1;}
return d.rows[lo];}
svg.addEventListener("mousemove",function(ev){
const r=svg.getBoundingClientRect();const ux=(ev.clientX-r.left)/r.width*d.w;
if(ux<d.left||ux>d.left+d.plotw||!d.rows.length){tip.style.display="none";cur.setAttribute("visibility","hidden");return;}
const t=d.t0+(ux-d.left)/d.plotw*(d.t1-d.t0);const w=find(t);
cur.setAttribute("x1",ux);cur.setAttribute("x2",ux);cur.setAttribute("visibility","visible");
let s=fmt(w[0])+"–"+fmt(w[1])+"  window "+w[2]+"\n"+w[3]+" "+w[4].toFixed(2)+"   ("+
w[5].map(function(p){return p[0]+" "+p[1].toFixed(2);}).join(", ")+")\nfaces "+w[6]+" · speech "+
Math.round(w[7]*100)+" %";
const rs=d.reasons[String(w[2])];
if(rs){s+="\n\nreasoning: "+rs.think+"\n→ "+(rs.valid?rs.answer:(rs.fallback||"?")+" (invalid answer; fast label kept)");}
tip.textContent=s;tip.style.display="block";
const x=Math.min(ev.clientX+14,window.innerWidth-430);tip.style.left=x+"px";tip.style.top=(ev.clientY+14)+"px";});
svg.addEventListener("mouseleave",function(){tip.style.display="none";cur.setAttribute("visibility","hidden");});
});})();
"""


def _json_script(obj: Any) -> str:
    # "</" would end the script element early; JSON allows "\/" so escaping it keeps the data intact
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def render_html(results: Results, *, title: str | None = None, notice: str | None = None) -> str:
    """The whole page as one string (UTF-8 when written)."""
    title = title or f"affectstream report — {Path(results.source).name if results.source else 'results'}"
    sections = []
    data_scripts = []
    for n, tl in enumerate(results.streams.values()):
        labels = tl.labels
        used = {w["label"] for w in tl.windows} | {
            k for w in tl.windows for k, v in (w.get("scores") or {}).items() if float(v or 0) > 0
        }
        legend = "".join(
            f'<span><i style="background:{color_of(k, labels)}"></i>{_esc(k)}</span>'
            for k in labels
            if k in used
        )
        profile = tl.windows[0].get("profile", "")
        sections.append(
            f'<section class="stream" data-stream="{_esc(tl.stream)}" data-windows="{len(tl.windows)}">'
            f'<h2>{_esc(tl.stream)} <span class="muted">· {_esc(profile)} · {_fmt_t(tl.start)}–'
            f"{_fmt_t(tl.end)}</span></h2>{_svg(tl, n)}"
            f'<div class="legend">{legend}<span class="muted">■ faces lane: faces per window · ■ speech lane: '
            f"share of speech · ● reasoning (hover)</span></div>{_summary_html(tl)}</section>"
        )
        data_scripts.append(
            f'<script type="application/json" id="data-svg-{n}">{_json_script(_hover_data(tl))}</script>'
        )
    made = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    notes = []
    if results.skipped:
        notes.append(f"{results.skipped} line(s) of the input were not results and were skipped")
    if results.expired:
        notes.append(f"{results.expired} result(s) older than the retention limit were left out")
    note = f'<p class="muted">{_esc("; ".join(notes))}.</p>' if notes else ""
    notice_html = f'<p class="notice">{_esc(notice)}</p>' if notice else ""
    total = sum(len(t.windows) for t in results.streams.values())
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f'<meta name="generator" content="{GENERATOR}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f'<body data-windows="{total}" data-streams="{len(results.streams)}">'
        f'<header><h1>{_esc(title)}</h1><div class="muted">{len(results.streams)} stream(s), {total} '
        f"windows · generated {_esc(made)} by affectstream · emotion estimates from faces and voice are "
        f"uncertain and must not be used to judge people</div>{notice_html}{note}</header>"
        f'<main>{"".join(sections)}</main><div id="tip"></div>{"".join(data_scripts)}'
        f"<script>{_JS}</script></body></html>\n"
    )

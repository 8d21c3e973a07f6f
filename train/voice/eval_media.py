"""`affectstream eval media --labels CSV`: the engine over labelled clips, scored per modality.

Each clip (video+audio, audio-only, or a still image) goes through what `affectstream run` uses: the
file source (PyAV decode), the windower (same length/hop/frames) and the `lite` analyzer, in batches.
A clip's label is the argmax of its windows' mean scores; with `--per-modality` the same is done with
the face-only scores (track average) and the voice-only scores (the speech-emotion head) of the
windows, and a window-level comparison on windows that had both a face and speech is added — the
figure fusion must not lose on. Clips where a modality was never observed are left out of that
modality's row (their count is reported), not counted as errors.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.types import VideoFrame, Window, WindowResult

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class EvalError(ValueError):
    """Unusable label list or media; one line for the user."""


@dataclass(slots=True)
class ClipResult:
    path: str
    label: str
    windows: int = 0
    fused: np.ndarray | None = None
    face: np.ndarray | None = None
    voice: np.ndarray | None = None
    both: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)  # fused, face, voice
    error: str | None = None
    group: str = ""


def read_labels(path: str | Path) -> list[tuple[Path, str, str]]:
    """`path,label[,dataset]` rows (paths relative to the CSV's folder); checked before anything runs."""
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"label file {p} not found")
    with p.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise EvalError(f"{p} has no rows")
    key = "path" if "path" in rows[0] else "file" if "file" in rows[0] else None
    if key is None or "label" not in rows[0]:
        raise EvalError(f"{p}: needs columns path (or file) and label")
    out = []
    for n, r in enumerate(rows, start=2):
        lab = (r.get("label") or "").strip().lower()
        if lab not in EMOTIONS:
            raise EvalError(f"{p}:{n}: label {lab!r} is not one of {', '.join(EMOTIONS)}")
        media = Path((r.get(key) or "").strip())
        if not media.is_absolute():
            media = p.parent / media
        if not media.is_file():
            raise EvalError(f"{p}:{n}: media file {media} not found")
        out.append((media, lab, (r.get("dataset") or r.get("group") or "").strip()))
    return out


def image_window(path: Path, stream: str) -> Window:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EvalError(f"{path}: cannot read the image")
    return Window(stream, 0, 0.0, 1.0, [VideoFrame(0.5, img, 0)], np.zeros(0, np.float32))


async def _file_windows(path: Path, stream: str, length: float, hop: float, n_frames: int) -> list[Window]:
    from affectstream.streams.sources.factory import open_source
    from affectstream.streams.windower import Windower

    src = open_source(f"{stream}={path}")
    win = Windower(stream, length, hop, n_frames)
    out: list[Window] = []
    try:
        async for item in src:
            out.extend(win.push(item))
    finally:
        await src.close()
    out.extend(win.flush())
    return out


def clip_windows(
    path: Path, stream: str, length: float = 2.0, hop: float = 1.0, n_frames: int = 8
) -> list[Window]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [image_window(path, stream)]
    return asyncio.run(_file_windows(path, stream, length, hop, n_frames))


def face_scores(r: WindowResult) -> np.ndarray | None:
    """The window's face-only distribution: its tracks' scores weighted like fusion weights them
    (the first track is the heaviest; equal weights here are a close, simple stand-in)."""
    if not r.faces:
        return None
    return np.mean([[f.scores[k] for k in EMOTIONS] for f in r.faces], axis=0)


def voice_scores(r: WindowResult) -> np.ndarray | None:
    if r.voice is None or r.voice.scores is None:
        return None
    return np.array([r.voice.scores[k] for k in EMOTIONS])


def score_clip(results: list[WindowResult], clip: ClipResult) -> ClipResult:
    fused = [np.array([r.scores[k] for k in EMOTIONS]) for r in results]
    faces = [f for f in (face_scores(r) for r in results) if f is not None]
    voices = [v for v in (voice_scores(r) for r in results) if v is not None]
    clip.windows = len(results)
    # windows with nothing observed (uniform scores) carry no vote: leave them out of the clip's mean
    seen = [p for p, r in zip(fused, results, strict=True) if r.modalities]
    clip.fused = np.mean(seen or fused, axis=0) if fused else None
    clip.face = np.mean(faces, axis=0) if faces else None
    clip.voice = np.mean(voices, axis=0) if voices else None
    for r, p in zip(results, fused, strict=True):
        f, v = face_scores(r), voice_scores(r)
        if f is not None and v is not None:
            clip.both.append((p, f, v))
    return clip


def evaluate(
    items: list[tuple[Path, str, str]],
    analyzer: Any,
    *,
    length: float = 2.0,
    hop: float = 1.0,
    n_frames: int = 8,
    progress: Any = None,
) -> list[ClipResult]:
    out = []
    for i, (path, label, group) in enumerate(items):
        clip = ClipResult(str(path), label, group=group)
        try:
            ws = clip_windows(path, f"eval{i}", length, hop, n_frames)
        except Exception as e:  # a broken file is reported in its row, the others go on
            clip.error = str(e).splitlines()[0] if str(e) else type(e).__name__
            out.append(clip)
            continue
        results: list[WindowResult] = []
        for a in range(0, len(ws), 8):
            results.extend(analyzer.analyze_batch(ws[a : a + 8]))
        out.append(score_clip(results, clip))
        if progress is not None and (i + 1) % 25 == 0:
            progress(f"{i + 1}/{len(items)} clips")
    return out


def _argmax(p: np.ndarray) -> str:
    return EMOTIONS[int(np.argmax(p))]


def report(clips: list[ClipResult], per_modality: bool) -> dict[str, Any]:
    from affectstream.train.voice.report import summary, table

    ok = [c for c in clips if c.error is None and c.fused is not None]
    rows: dict[str, Any] = {}
    coverage: dict[str, int] = {"clips": len(clips), "failed": len(clips) - len(ok)}
    groups = [c.group or "all" for c in ok]
    if ok:
        rows["fused"] = summary([c.label for c in ok], [_argmax(c.fused) for c in ok], groups)  # type: ignore[arg-type]
    if per_modality:
        for name in ("face", "voice"):
            sel = [c for c in ok if getattr(c, name) is not None]
            coverage[f"{name}_observed"] = len(sel)
            if sel:
                rows[f"{name}-only"] = summary(
                    [c.label for c in sel],
                    [_argmax(getattr(c, name)) for c in sel],
                    [c.group or "all" for c in sel],
                )
        both = [(c.label, t) for c in ok for t in c.both]
        coverage["windows_face_and_voice"] = len(both)
        if both:
            y = [lab for lab, _ in both]
            for j, name in enumerate(("fused", "face-only", "voice-only")):
                rows[f"{name}, windows with face+speech"] = summary(y, [_argmax(t[j]) for _, t in both])
    return {
        "coverage": coverage,
        "rows": rows,
        "table": table(rows) if rows else "",
        "failed": [{"path": c.path, "error": c.error} for c in clips if c.error],
        "clips": [
            {
                "path": c.path,
                "label": c.label,
                "windows": c.windows,
                "fused": None if c.fused is None else _argmax(c.fused),
                "face": None if c.face is None else _argmax(c.face),
                "voice": None if c.voice is None else _argmax(c.voice),
            }
            for c in clips
        ],
    }


def run(
    labels: str | Path,
    *,
    profile: str | Path = "lite",
    per_modality: bool = False,
    out: str | Path | None = None,
    limit: int | None = None,
    analyzer: Any = None,
    voice_head: str | Path | None = None,
) -> dict[str, Any]:
    items = read_labels(labels)[: limit or None]
    if analyzer is None:
        from affectstream.engine.lite import LiteAnalyzer

        if voice_head is not None and not Path(voice_head).is_file():
            raise EvalError(f"voice head {voice_head} not found")
        analyzer = LiteAnalyzer(profile, threads=1, voice_head=voice_head)
    t0 = time.monotonic()
    clips = evaluate(
        items, analyzer, progress=lambda m: print(f"[eval media] {m}", file=sys.stderr, flush=True)
    )
    rep = report(clips, per_modality)
    rep["seconds"] = round(time.monotonic() - t0, 1)
    info = analyzer.runtime_info() if hasattr(analyzer, "runtime_info") else {}
    rep["voice_model"] = info.get("voice_emotion")
    if out is not None:
        from affectstream.train.voice.report import confusion_png

        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        (o / "report.json").write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
        cms = {n: r["confusion"] for n, r in rep["rows"].items() if "windows" not in n}
        if cms:
            confusion_png(cms, o / "confusion.png", f"eval media: {Path(labels).name}")
    return rep


def main(args: Any) -> int:
    """Entry point for `affectstream eval media` (argparse namespace: labels, profile, per_modality, out)."""
    from affectstream.engine.runtimes.base import ModelFileError

    if getattr(args, "labels", None) is None:
        print("affectstream: eval media needs --labels CSV (path,label)", file=sys.stderr)
        return 2
    try:
        rep = run(
            args.labels,
            profile=getattr(args, "profile", None) or "lite",
            per_modality=bool(getattr(args, "per_modality", False)),
            out=getattr(args, "out", None),
            limit=getattr(args, "limit", None),
            voice_head=getattr(args, "voice_head", None),
        )
    except (EvalError, ModelFileError) as e:
        print(f"affectstream: {e}", file=sys.stderr)
        return 2
    print(rep["table"])
    cov = rep["coverage"]
    print(
        f"clips: {cov['clips']} ({cov['failed']} failed)"
        + "".join(f", {k}: {v}" for k, v in cov.items() if k not in ("clips", "failed"))
    )
    for f in rep["failed"]:
        print(f"failed: {f['path']}: {f['error']}")
    return 1 if rep["failed"] and len(rep["failed"]) == cov["clips"] else 0

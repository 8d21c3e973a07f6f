"""Speech-emotion model in the fast path: audio-video composites, and its per-window cost.

    # 1. composites: each labelled speech clip (a test list, e.g. the fold-0 list `train voice` writes)
    #    under a still face of the SAME label from a folder of labelled face images (faces/labels.csv)
    python bench/bench_voice.py composites --labels voice-head/fold0_test.csv --faces FACES_DIR \
        --out /tmp/composites --per-class 20
    affectstream eval media --labels /tmp/composites/labels.csv --per-modality \
        --voice-head voice-head/voice_emotion_fold0.onnx --out /tmp/composites/eval

    # 2. cost of the voice model on the fast path: the same windows through three analyzers (voice model
    #    off; on, after the faces (default); on, beside the faces), interleaved window by window in one run
    python bench/bench_voice.py cost --labels /tmp/composites/labels.csv --limit 40

Composites are synthetic pairings (a real voice and a real face that never met); figures from them
say how fusion combines two real signals of the same label, not how the engine does on real video.
The face images must not be used to judge the face model if it was trained on them (FER-2013 train).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from affectstream.engine.metrics import percentile

CANVAS = (240, 320)  # h, w
FACE_SIDE = 128


def _face_png(src: Path, dst: Path) -> None:
    import cv2

    g = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    if g is None:
        raise SystemExit(f"cannot read face image {src}")
    f = cv2.resize(g, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
    c = np.full(CANVAS, 128, np.uint8)
    y0, x0 = (CANVAS[0] - FACE_SIDE) // 2, (CANVAS[1] - FACE_SIDE) // 2
    c[y0 : y0 + FACE_SIDE, x0 : x0 + FACE_SIDE] = f
    cv2.imwrite(str(dst), c)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def composites(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    speech = _rows(Path(args.labels))
    faces = _rows(Path(args.faces) / "labels.csv")
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in faces:
        by_label.setdefault(r["label"], []).append(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    picked: list[dict[str, str]] = []
    for lab in sorted({r["label"] for r in speech}):
        rows = [r for r in speech if r["label"] == lab]
        idx = rng.permutation(len(rows))[: args.per_class]
        picked += [rows[i] for i in sorted(idx)]
    lines = ["path,label,dataset,speech,face"]
    t0 = time.monotonic()
    for n, r in enumerate(picked):
        lab = r["label"]
        face = by_label[lab][int(rng.integers(len(by_label[lab])))]
        png = out / f"face_{n:04d}.png"
        _face_png(Path(args.faces) / face["file"], png)
        mp4 = out / f"comp_{n:04d}_{lab}.mp4"
        cmd = [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "10", "-i", str(png),
            "-i", r["path"], "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest", str(mp4),
        ]  # fmt: skip
        subprocess.run(cmd, check=True)
        png.unlink()
        lines.append(f"{mp4.name},{lab},composite-{r.get('dataset', '')},{r['path']},{face['file']}")
    (out / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(picked)} composites in {time.monotonic() - t0:.0f} s -> {out / 'labels.csv'}")
    return 0


def _pct(a: list[float], q: float) -> float:
    v = percentile(a, q)  # the one p95 definition (nearest rank) that stats and the other benches use
    return float("nan") if v is None else v


def cost(args: argparse.Namespace) -> int:
    """Per-window `analyze` time of the same windows through three analyzers, interleaved window by
    window in rotating order (same load for all): voice model off, on with the voice part after the
    faces (the default), and on with it beside the faces in a second thread (`parallel_voice`). The
    goal compares the default "on" with "off"."""
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.train.voice.eval_media import clip_windows, read_labels

    items = read_labels(args.labels)[: args.limit]
    windows = [w for i, (p, _, _) in enumerate(items) for w in clip_windows(p, f"b{i}")]
    analyzers = {
        "off": LiteAnalyzer(args.profile, threads=1, voice_model=False),
        "on": LiteAnalyzer(args.profile, threads=1, voice_head=args.voice_head),
        "on_parallel": LiteAnalyzer(args.profile, threads=1, voice_head=args.voice_head, parallel_voice=True),
    }
    for name in ("on", "on_parallel"):
        if analyzers[name].voice_emotion is None:
            raise SystemExit(f"voice model not loaded: {analyzers[name].voice_emotion_error}")
    names = list(analyzers)
    lat: dict[str, list[float]] = {n: [] for n in names}
    voice_ms: list[float] = []
    speech = 0
    load0 = os.getloadavg()
    for k, w in enumerate(windows):
        for name in names[k % 3 :] + names[: k % 3]:
            w.closed_at = time.monotonic()
            r = analyzers[name].analyze(w)
            lat[name].append(r.latency_ms["analyze"])
            if name == "on" and "voice_emotion" in r.latency_ms:
                voice_ms.append(r.latency_ms["voice_emotion"])
                speech += int(r.voice is not None and r.voice.scores is not None)
    res: dict[str, object] = {
        "windows": len(windows),
        "windows_with_speech": speech,
        **{f"{n}_ms": {"p50": round(_pct(lat[n], 50), 1), "p95": round(_pct(lat[n], 95), 1)} for n in names},
        "voice_emotion_ms": {"p50": round(_pct(voice_ms, 50), 1), "p95": round(_pct(voice_ms, 95), 1)},
        "chunk_s": analyzers["on"].voice_emotion.info.chunk_s,
        "seconds_encoded_per_window": round(
            analyzers["on"].voice_emotion.encoder.samples_encoded / 16_000 / max(1, speech), 2
        ),
        "load": [load0, os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    for n in ("on", "on_parallel"):
        res[f"{n}_delta_p95_ms"] = round(_pct(lat[n], 95) - _pct(lat["off"], 95), 1)
        res[f"{n}_ratio_p95"] = round(_pct(lat[n], 95) / _pct(lat["off"], 95), 2)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("composites")
    c.add_argument("--labels", required=True, help="speech test list: path,label[,dataset]")
    c.add_argument("--faces", required=True, help="folder with labels.csv (file,label) of face images")
    c.add_argument("--out", required=True)
    c.add_argument("--per-class", type=int, default=20)
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=composites)
    k = sub.add_parser("cost")
    k.add_argument("--labels", required=True, help="media list (path,label)")
    k.add_argument("--limit", type=int, default=40)
    k.add_argument("--profile", default="lite")
    k.add_argument("--voice-head", help="a head .onnx instead of the profile's")
    k.add_argument("--out")
    k.set_defaults(func=cost)
    args = p.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

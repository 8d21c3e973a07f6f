"""The peer a user would pick instead: the `fer` package's own video analysis, on the same clip.

    python bench/bench_fer_peer.py [--clip examples/sample.mp4] [--fer-python /tmp/fervenv/bin/python]

`fer` needs TensorFlow, which affectstream never installs: build a separate venv first, e.g.
    python -m venv /tmp/fervenv && /tmp/fervenv/bin/pip install tensorflow-cpu \
        "opencv-contrib-python-headless<5" pandas tqdm requests "setuptools<81" Pillow && \
        /tmp/fervenv/bin/pip install --no-deps fer==25.10.3
Both sides analyse EVERY frame of the clip (fer: `Video.analyze(FER(), frequency=1)` with its default
Haar detector and its int8 TFLite expression model; affectstream: `LiteAnalyzer` on 1 s windows holding
all frames, no overlap, so the frame cache gives no advantage; audio analysed too). fer's
`Video.analyze` calls `cv2.waitKey` even with `display=False`, which a headless OpenCV cannot do, so
the peer run replaces `cv2.waitKey`/`destroyAllWindows` with no-ops (this only removes work from fer).
Frames/s are measured in this run on this machine, one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

FER_SCRIPT = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import cv2
cv2.waitKey = lambda *a: -1
cv2.destroyAllWindows = lambda *a: None
from fer.fer import FER
from fer.classes import Video
det = FER()
v = Video(sys.argv[1], outdir=sys.argv[2])
t = time.perf_counter()
r = v.analyze(det, display=False, frequency=1, save_frames=False, save_video=False,
              annotate_frames=False, zip_images=False, output="pandas")
dt = time.perf_counter() - t
labels = r[["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]].idxmax(axis=1)
print(json.dumps({"frames": int(len(r)), "seconds": dt, "happy_share": float((labels == "happy").mean())}))
"""


def decode(clip: Path) -> tuple[list[tuple[float, np.ndarray]], np.ndarray]:
    import av

    frames, audio = [], []
    with av.open(str(clip)) as c:
        for f in c.decode(video=0):
            frames.append((float(f.time), f.to_ndarray(format="bgr24")))
    with av.open(str(clip)) as c:
        if c.streams.audio:
            rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
            for f in c.decode(audio=0):
                for g in rs.resample(f):
                    audio.append(g.to_ndarray().reshape(-1))
    return frames, (np.concatenate(audio) if audio else np.zeros(0, np.float32))


def run_ours(profile: Path, clip: Path, threads: int) -> dict:
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.types import VideoFrame, Window

    frames, audio = decode(clip)
    a = LiteAnalyzer(profile, threads=threads)
    wins, per = [], {}
    for i, (ts, img) in enumerate(frames):
        per.setdefault(int(ts), []).append(VideoFrame(ts=ts, image=img, index=i))
    for k in sorted(per):
        wins.append(Window("peer", k, float(k), k + 1.0, per[k], audio[k * 16000 : (k + 1) * 16000]))
    t = time.perf_counter()
    results = [a.analyze(w) for w in wins]
    dt = time.perf_counter() - t
    n = sum(len(w.frames) for w in wins)
    return {
        "frames": n,
        "seconds": dt,
        "happy_share": float(np.mean([r.label == "happy" for r in results])),
        "faces_per_frame": a.faces_classified / max(1, n),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(ROOT / "examples" / "sample.mp4"))
    ap.add_argument("--profile", default=str(Path.home() / ".cache/affectstream-test/profiles/lite"))
    ap.add_argument("--fer-python", default="/tmp/fervenv/bin/python")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    clip = Path(args.clip)
    print(
        f"# affectstream lite vs fer 25.10.3 video analysis — {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"clip: {clip.name}, every frame analysed by both\n")
    ours = run_ours(Path(args.profile), clip, args.threads)
    ours_fps = ours["frames"] / ours["seconds"]
    print(
        f"affectstream lite: {ours['frames']} frames in {ours['seconds']:.2f} s = {ours_fps:.1f} frames/s "
        f"(windows labelled happy: {ours['happy_share']:.0%}; faces/frame {ours['faces_per_frame']:.2f}; audio included)"
    )
    if not Path(args.fer_python).exists():
        print(f"fer: not measured — no TensorFlow venv at {args.fer_python} (see this script's docstring)")
        return
    out = subprocess.run(
        [args.fer_python, "-c", FER_SCRIPT, str(clip), "/tmp/fer-bench-out"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
    if out.returncode != 0 or line is None:
        print(f"fer: failed (rc {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
        return
    peer = json.loads(line)
    peer_fps = peer["frames"] / peer["seconds"]
    print(
        f"fer (Haar + int8 TFLite, TensorFlow): {peer['frames']} frames in {peer['seconds']:.2f} s = {peer_fps:.1f} frames/s "
        f"(frames labelled happy: {peer['happy_share']:.0%})"
    )
    print(f"ratio: {ours_fps / peer_fps:.1f}× fer's frames/s")


if __name__ == "__main__":
    sys.exit(main())

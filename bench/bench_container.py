"""The CPU image against the same command outside it, same run: image size, time to first window, frames/s.

    python bench/bench_container.py [--image affectstream:cpu] [--repeats 3] [--out results.json]

Runs `affectstream run <sample> --no-mqtt --jsonl -` on the host (the checkout's install, the prepared
`lite` profile) and in the container (`docker run --rm --network host IMAGE run
/opt/affectstream/examples/sample.mp4 ...`, profile baked in), alternating host/container `--repeats`
times so both see the same machine load. Per run: wall time, time to the first window line (container:
including `docker run`'s own start), frames/s end to end (the clip's video frames / wall time) and frames/s
in steady state (frames covered from the first to the last window / the time between them). Prints a
Markdown table with the container/host ratios (medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample.mp4"
SAMPLE_IN_IMAGE = "/opt/affectstream/examples/sample.mp4"


def video_frames(path: Path) -> tuple[int, float]:
    """(video frames, frames per second) of a clip, counted by decoding: the denominator of frames/s."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, float(s.average_rate or 0)


def timed_run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall time, first/last window arrival (s after start) and window count of one JSONL run."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = last = None
    n = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"affectstream.window/1"' not in line:
            continue
        now = time.monotonic() - t0
        first = now if first is None else first
        last = now
        n += 1
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() != 0 or first is None or last is None:
        sys.exit(f"bench_container: {' '.join(cmd[:4])}... failed ({proc.returncode}): {err[-800:]}")
    return {"wall_s": time.monotonic() - t0, "first_window_s": first, "last_window_s": last, "windows": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="affectstream:cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--docker", default="/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"
    )
    ap.add_argument(
        "--host-cmd", default=shutil.which("affectstream") or str(ROOT / ".venv/bin/affectstream")
    )
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    size = subprocess.run(
        [a.docker, "image", "inspect", "--format", "{{.Size}}", a.image], capture_output=True, text=True
    )
    if size.returncode != 0:
        print(f"bench_container: image {a.image} not found ({size.stderr.strip()})", file=sys.stderr)
        return 2
    frames, fps = video_frames(SAMPLE)
    hop = 1.0  # default window hop; the last window ends at the clip's end
    args = ["--no-mqtt", "--jsonl", "-"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmds = {
        "host": [a.host_cmd, "run", str(SAMPLE), *args],
        "container": [a.docker, "run", "--rm", "--network", "host", a.image, "run", SAMPLE_IN_IMAGE, *args],
    }
    runs: dict[str, list[dict[str, float]]] = {"host": [], "container": []}
    for i in range(a.repeats):
        for where, cmd in cmds.items():
            r = timed_run(cmd, env)
            span = max(r["windows"] - 1, 1) * hop * fps  # frames between the first and the last window
            r["fps_end_to_end"] = frames / r["wall_s"]
            r["fps_steady"] = span / max(r["last_window_s"] - r["first_window_s"], 1e-6)
            runs[where].append(r)
            print(
                f"[{i + 1}/{a.repeats}] {where:9s} " + " ".join(f"{k}={v:.2f}" for k, v in r.items()),
                flush=True,
            )

    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out = {
        "image": a.image,
        "image_bytes": int(size.stdout.strip()),
        "clip_frames": frames,
        "clip_fps": fps,
        "median": med,
        "runs": runs,
        "uptime": load,
    }
    print(
        f"\nimage {a.image}: {out['image_bytes'] / 1e6:.0f} MB; clip {frames} frames at {fps:.0f} fps; {load}"
    )
    print(f"| metric (median of {a.repeats}) | host | container | container/host |")
    print("|---|---|---|---|")
    for k in ("wall_s", "first_window_s", "fps_end_to_end", "fps_steady"):
        h, c = med["host"][k], med["container"][k]
        print(f"| {k} | {h:.2f} | {c:.2f} | {c / h:.2f} |")
    if a.out:
        a.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

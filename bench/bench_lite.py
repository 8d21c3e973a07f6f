"""Benchmark the lite fast path; every figure is measured in this run, ratios against same-run baselines.

    python bench/bench_lite.py [--profile DIR] [--threads 2] [--seconds 20] [--quick]

Sections:
1. per-stage latency per window (2 s windows, hop 1 s, 8 frames, real face + real speech) and
   fast-path frames/s;
2. ONNX Runtime vs torch eager on the same encoders (BlazeFace short, mini-Xception), same inputs;
3. per-frame cache on vs off at length/hop = 2 (windows/s over one stream);
4. 4 concurrent real-time streams: a window closes every hop per stream (staggered), one worker runs
   `analyze_batch` on whatever is pending; latency = result ready − window closed (p50/p95).
Media: scikit-image's astronaut (panning/zooming) + beckett.wav, as in the tests.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SR = 16000


VAD_SEQUENCE_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"


def extract_vad_sequence(profile: Path) -> Path:
    """silero_vad_16k_sequence.onnx from the pinned silero-vad 6.2.3 wheel, hash-checked."""
    import tempfile
    import zipfile

    from affectstream.engine.hashing import sha256_bytes

    candidates = [profile.parent.parent / "wheels", Path.home() / ".cache/affectstream-test/wheels"]
    for d in candidates:
        for whl in sorted(d.glob("silero_vad-6.2.3-*.whl")):
            with zipfile.ZipFile(whl) as z:
                data = z.read("silero_vad/data/silero_vad_16k_sequence.onnx")
            if sha256_bytes(data) != VAD_SEQUENCE_SHA256:
                raise SystemExit(f"{whl}: silero_vad_16k_sequence.onnx hash mismatch")
            out = Path(tempfile.mkdtemp()) / "silero_vad_16k_sequence.onnx"
            out.write_bytes(data)
            return out
    raise SystemExit("silero-vad 6.2.3 wheel not found in the wheel cache; prepare the lite profile first")


def pct(xs: list[float], q: float) -> float:
    from affectstream.engine.metrics import percentile  # the project's one p50/p95 (nearest rank)

    v = percentile(xs, q)
    return float("nan") if v is None else v


def make_windows(
    stream: str, n: int, frames: list[np.ndarray], audio: np.ndarray, *, hop_frames: int = 4, fps: float = 4.0
):
    """n windows of 8 frames each, consecutive windows sharing 8 - hop_frames frames; 2 s of audio each."""
    from affectstream.engine.types import VideoFrame, Window

    out = []
    for k in range(n):
        first = k * hop_frames
        vf = [
            VideoFrame(ts=(first + j) / fps, image=frames[(first + j) % len(frames)], index=first + j)
            for j in range(8)
        ]
        a0 = int(first / fps * SR) % max(1, len(audio) - 2 * SR)
        out.append(Window(stream, k, first / fps, first / fps + 2.0, vf, audio[a0 : a0 + 2 * SR].copy()))
    return out


def bench_stages(analyzer_cls, prof, threads: int, frames, audio, n: int) -> dict:
    a = analyzer_cls(prof, threads=threads)
    wins = make_windows("stages", n + 2, frames, audio)
    a.analyze(wins[0])
    a.analyze(wins[1])  # warm-up
    stages: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for w in wins[2:]:
        r = a.analyze(w)
        for k, v in r.latency_ms.items():
            stages.setdefault(k, []).append(v)
    wall = time.perf_counter() - t0
    new_frames = 4 * n
    return {
        "stages_p50": {k: pct(v, 50) for k, v in stages.items() if k != "fast_path"},
        "stages_p95": {k: pct(v, 95) for k, v in stages.items() if k != "fast_path"},
        "windows_per_s": n / wall,
        "window_frames_per_s": 8 * n / wall,
        "new_frames_per_s": new_frames / wall,
    }


def time_pair(a, b, reps: int) -> tuple[float, float]:
    """Median ms of `a` and of `b`, calls interleaved (a, b, b, a, ...) so both see the same machine
    load — this box is shared, and back-to-back blocks would compare different loads."""
    a()
    b()
    ta, tb = [], []
    for i in range(reps):
        for fn, acc in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return statistics.median(ta) * 1000, statistics.median(tb) * 1000


def bench_ort_vs_torch(prof, threads: int, frames, reps: int) -> dict:
    import torch
    from affectstream.engine.models.expression import ExpressionModel
    from affectstream.engine.models.face_detector import FaceDetector
    from affectstream.engine.runtimes.select import load_runtime
    from affectstream.engine.runtimes.torch_rt import TorchRuntime
    from affectstream.export.blazeface import load_blazeface
    from affectstream.export.fer import load_hdf5

    torch.set_num_threads(threads)
    imgs = frames[:8]
    det_ort = FaceDetector(load_runtime(prof.path("face_short"), "cpu", threads=threads), model="short")
    det_torch = FaceDetector(
        TorchRuntime(
            load_blazeface(prof.path("face_short_tflite")),
            ["input"],
            ["regressors", "classificators"],
            threads=threads,
        ),
        model="short",
    )
    faces = det_ort.detect_batch(imgs)
    crops = np.concatenate([_crops(i, fs) for i, fs in zip(imgs, faces, strict=True)])
    ex_ort = ExpressionModel(load_runtime(prof.path("expression"), "cpu", threads=threads))
    ex_torch = ExpressionModel(
        TorchRuntime(load_hdf5(prof.path("expression_hdf5")), ["input"], ["probs"], threads=threads)
    )
    res = {}
    for name, (o, t) in {
        "face detection (BlazeFace short, 8 frames/call)": (
            lambda: det_ort.detect_batch(imgs),
            lambda: det_torch.detect_batch(imgs),
        ),
        f"expression (mini-Xception, {len(crops)} faces/call)": (
            lambda: ex_ort.predict(crops),
            lambda: ex_torch.predict(crops),
        ),
        "expression (mini-Xception, 1 face/call)": (
            lambda: ex_ort.predict(crops[:1]),
            lambda: ex_torch.predict(crops[:1]),
        ),
    }.items():
        mo, mt = time_pair(o, t, reps)
        res[name] = (mo, mt, mt / mo)
    return res


def _crops(img, faces):
    from affectstream.engine.models.expression import crop_face, to_gray

    g = to_gray(img)
    return np.stack([crop_face(g, f.box) for f in faces]) if faces else np.zeros((0, 64, 64), np.uint8)


def interleaved_windows_per_s(analyzers: dict, frames, audio, n: int) -> dict:
    """Windows/s of each analyzer on the same window sequence (hop = length/2), one window of each in
    turn (order alternating) so a change in machine load hits all of them alike."""
    wins = {k: make_windows(f"il-{k}", n, frames, audio) for k in analyzers}
    for k, a in analyzers.items():
        a.analyze_batch(make_windows(f"warm-{k}", 2, frames, audio))
    spent = dict.fromkeys(analyzers, 0.0)
    stages: dict[str, dict[str, float]] = {k: {} for k in analyzers}
    keys = list(analyzers)
    for i in range(n):
        for k in keys if i % 2 == 0 else keys[::-1]:
            t = time.perf_counter()
            r = analyzers[k].analyze(wins[k][i])
            spent[k] += time.perf_counter() - t
            for st, v in r.latency_ms.items():
                stages[k][st] = stages[k].get(st, 0.0) + v / n
    out: dict = {k: n / spent[k] for k in keys}
    out["stages"] = stages
    return out


def bench_cache(analyzer_cls, prof, threads: int, frames, audio, n: int) -> dict:
    off = analyzer_cls(prof, threads=threads, cache_frames=0)
    on = analyzer_cls(prof, threads=threads, cache_frames=1024)
    f0, n0 = off.frames_processed, on.frames_processed
    r = interleaved_windows_per_s({"off": off, "on": on}, frames, audio, n)
    frame_stage = {
        k: r["stages"][k].get("detect", 0) + r["stages"][k].get("expression", 0) for k in ("off", "on")
    }
    return {
        "off": r["off"],
        "on": r["on"],
        "ratio": r["on"] / r["off"],
        "stages": r["stages"],
        "frame_stage_ratio": frame_stage["off"] / max(frame_stage["on"], 1e-9),
        "off_frames": off.frames_processed - f0,
        "on_frames": on.frames_processed - n0,
    }


def bench_realtime(
    analyzer_cls, prof, threads: int, frames, audio, seconds: float, streams: int = 4, hop: float = 1.0
) -> dict:
    """Real-time load: each stream closes a window every `hop` s (streams staggered by hop/streams)."""
    a = analyzer_cls(prof, threads=threads)
    a.analyze_batch(make_windows("warm", 2, frames, audio))
    per_stream = [
        make_windows(f"rt{s}", int(seconds / hop) + 1, frames[s:] + frames[:s], audio) for s in range(streams)
    ]
    pending: list = []
    cv = threading.Condition()
    lat: list[float] = []
    batches: list[int] = []
    done = threading.Event()

    def worker() -> None:
        while True:
            with cv:
                while not pending and not done.is_set():
                    cv.wait(0.05)
                if not pending and done.is_set():
                    return
                batch = pending[:]
                pending.clear()
            results = a.analyze_batch(batch)
            now = time.monotonic()
            for w, _r in zip(batch, results, strict=True):
                lat.append((now - w.closed_at) * 1000)
            batches.append(len(batch))

    th = threading.Thread(target=worker)
    th.start()
    t0 = time.monotonic()
    k = 0
    while k < len(per_stream[0]):
        for s in range(streams):
            due = t0 + k * hop + s * hop / streams
            dt = due - time.monotonic()
            if dt > 0:
                time.sleep(dt)
            w = per_stream[s][k]
            w.closed_at = time.monotonic()
            with cv:
                pending.append(w)
                cv.notify()
        k += 1
    done.set()
    th.join()
    return {
        "p50": pct(lat, 50),
        "p95": pct(lat, 95),
        "max": max(lat),
        "windows": len(lat),
        "mean_batch": float(np.mean(batches)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--profile",
        default=os.environ.get(
            "AFFECTSTREAM_BENCH_PROFILE", str(Path.home() / ".cache/affectstream-test/profiles/lite")
        ),
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of the 4-stream real-time run")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    ap.add_argument(
        "--vad-sequence",
        action="store_true",
        help="use Silero's sequence model (silero_vad_16k_sequence.onnx from the pinned silero-vad wheel in the "
        "wheel cache, SHA-256 checked) instead of the profile's streaming model",
    )
    args = ap.parse_args()

    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.profile import Profile
    from media import astronaut_bgr, beckett_audio, moving_frames

    prof = Profile.load(args.profile)
    if args.vad_sequence:
        vad_path = extract_vad_sequence(Path(args.profile))
        LiteAnalyzer = functools.partial(LiteAnalyzer, vad_model=vad_path)
        print(f"VAD: Silero sequence model ({vad_path.name})")
    frames = moving_frames(astronaut_bgr(), 48, (640, 480))
    audio = beckett_audio()
    n = 10 if args.quick else 40
    reps = 5 if args.quick else 30
    print(
        f"# lite fast-path benchmark — {platform.node()} {os.cpu_count()} cores, threads={args.threads}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start {os.getloadavg()[0]:.1f}"
    )
    print("media: 640x480 frames of the astronaut (1 face) + beckett.wav; windows 2 s / hop 1 s / 8 frames\n")

    s = bench_stages(LiteAnalyzer, prof, args.threads, frames, audio, n)
    print("## 1. per-stage latency per window (ms, cache on, 4 new + 4 cached frames per window)")
    print("| stage | p50 | p95 |\n|---|---|---|")
    for k in s["stages_p50"]:
        print(f"| {k} | {s['stages_p50'][k]:.1f} | {s['stages_p95'][k]:.1f} |")
    print(
        f"\nwindows/s {s['windows_per_s']:.1f}; window frames/s {s['window_frames_per_s']:.0f}; new (decoded) frames/s {s['new_frames_per_s']:.0f}\n"
    )

    print("## 2. ONNX Runtime vs torch eager, same encoders and inputs (median ms per call)")
    print("| encoder | ORT | torch | ratio |\n|---|---|---|---|")
    for k, (mo, mt, r) in bench_ort_vs_torch(prof, args.threads, frames, reps).items():
        print(f"| {k} | {mo:.2f} | {mt:.2f} | {r:.1f}× |")
    whole = interleaved_windows_per_s(
        {
            "ort": LiteAnalyzer(prof, threads=args.threads, actions=False),
            "torch": LiteAnalyzer(prof, threads=args.threads, runtime="torch", actions=False),
        },
        frames,
        audio,
        max(6, n // 4),
    )
    print(
        f"| whole fast path, no mesh (windows/s; VAD is ORT in both) | {whole['ort']:.1f} | "
        f"{whole['torch']:.1f} | {whole['ort'] / whole['torch']:.1f}× |\n"
    )

    c = bench_cache(LiteAnalyzer, prof, args.threads, frames, audio, n)
    print("## 3. per-frame cache at length/hop = 2 (one stream)")
    print(
        f"cache off: {c['off']:.1f} windows/s ({c['off_frames']} frames processed); cache on: {c['on']:.1f} windows/s ({c['on_frames']} frames) → {c['ratio']:.2f}×"
    )
    print(
        f"per-frame stages (detect + expression) per window: {c['frame_stage_ratio']:.2f}× less work with the cache"
    )
    print("| stage (mean ms/window) | cache off | cache on |\n|---|---|---|")
    for st in c["stages"]["off"]:
        if st != "fast_path":
            print(f"| {st} | {c['stages']['off'][st]:.1f} | {c['stages']['on'].get(st, 0.0):.1f} |")
    print()

    secs = 8.0 if args.quick else args.seconds
    rt = bench_realtime(LiteAnalyzer, prof, args.threads, frames, audio, secs)
    print(f"## 4. {4} concurrent real-time streams ({secs:.0f} s, hop 1 s, staggered)")
    print(
        f"latency after window close: p50 {rt['p50']:.1f} ms, p95 {rt['p95']:.1f} ms, max {rt['max']:.1f} ms over {rt['windows']} windows (mean batch {rt['mean_batch']:.2f})"
    )


if __name__ == "__main__":
    main()

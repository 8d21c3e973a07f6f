"""How many live WebRTC callers this machine analyzes in real time (lite profile).

The server (WebRtcServer + Pipeline + LiteAnalyzer, results on data channels; MQTT off so only the call
path is measured) runs in this process; N synthetic callers run in a *separate* process, each sending
a real face (640x480 VP8, `--fps`) and real speech (48 kHz Opus) over loopback-only ICE — as a browser
would, except that here the callers' encoders share the same cores, so the figures are a lower bound.

Per N it reports: received fps per caller (decoded by aiortc, and kept after the fps cap), windows/s
(all callers), label latency p50/p95 = data-channel arrival − capture time of the window's last
moment (caller clock; both processes share the machine's clock), and dropped windows/frames. A caller
is *real time* when it gets ≥ 90 % of the windows its call length allows (hop 1 s), nothing is
dropped and p95 latency stays under `--max-p95` s. "engine p50" is the part of the latency spent between the
windower closing a window and the engine publishing it (queue + analysis). Ratios are against N=1.

    python bench/bench_webrtc.py --callers 1,2,4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


# --------------------------------------------------------------------------- caller process
async def run_callers(url: str, n: int, seconds: float, fps: int) -> dict[str, Any]:
    from affectstream.streams.web.ice import restrict_to_loopback
    from fixtures_webrtc import FaceVideoTrack, SpeechAudioTrack, call

    restrict_to_loopback()
    cpu0 = os.times()
    callers = []
    for i in range(n):
        video = FaceVideoTrack(fps=fps, sizes=[(0.0, (640, 480))])
        callers.append(await call(url, [video, SpeechAudioTrack()], stream=f"bench-{i}"))
    await asyncio.gather(*(asyncio.wait_for(c.opened.wait(), 30) for c in callers))
    t_open = time.time()
    await asyncio.sleep(seconds)
    out = []
    for c in callers:
        hello = c.of("affectstream.webrtc.hello/")
        t0 = hello[0]["t0_unix"] if hello else None
        lat = [
            t - (t0 + m["window"]["end"])
            for t, m in c.messages
            if t0 is not None and str(m.get("schema", "")).startswith("affectstream.window/")
        ]
        pub = [float(m.get("latency_ms", {}).get("publish_delay", "nan")) for m in c.windows]
        out.append({"stream": c.stream, "windows": len(c.windows), "latency_s": lat, "publish_ms": pub})
        await c.close()
    cpu1 = os.times()
    busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    cpu = 100 * busy / max(1e-6, cpu1.elapsed - cpu0.elapsed)
    return {"opened_at": t_open, "seconds": seconds, "callers": out, "cpu_pct": cpu}


# --------------------------------------------------------------------------- server side
def _pct(values: Any, q: float) -> float:
    """The project's one percentile definition (engine/metrics.py: nearest rank), NaN when empty."""
    from affectstream.engine.metrics import percentile

    v = percentile(values, q)
    return float("nan") if v is None else v


def _worker_cpu_s(executor: Any) -> float:
    """CPU seconds of the executor's worker processes (process backend), so "server CPU" includes them."""
    total = 0.0
    for w in executor.stats().get("per_worker", []) if executor is not None else []:
        try:
            with open(f"/proc/{w['pid']}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            total += (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, KeyError, IndexError, ValueError, TypeError):
            pass
    return total


async def measure(n: int, seconds: float, fps: int, analyzer: Any, executor: Any = None) -> dict[str, Any]:
    from affectstream.engine.config import load_settings
    from affectstream.engine.pipeline import Pipeline
    from affectstream.engine.smoother import Smoother, SmootherSettings
    from affectstream.streams.web.datachannel import DataChannelSink
    from affectstream.streams.web.server import ServerConfig, WebRtcServer

    settings = load_settings(None, {"reasoning.enabled": False, "mqtt.enabled": False})
    channels = DataChannelSink()
    engine = Pipeline(
        settings, analyzer, [channels], smoother=Smoother(SmootherSettings()), executor=executor
    )
    server = WebRtcServer(ServerConfig(port=0, max_peers=max(4, n)), engine, channels)
    await server.start()
    cpu0 = os.times()
    wcpu0 = _worker_cpu_s(executor)
    samples: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    dropped_windows: dict[str, int] = {}
    try:
        cmd = [sys.executable, __file__, "--caller-process", server.url, str(n), str(seconds), str(fps)]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
        comm = asyncio.ensure_future(proc.communicate())
        while not comm.done():  # sample every call's counters while the callers are on
            now = time.monotonic()
            for sid, p in list(server.peers.items()):
                if p.connected_at is not None and p.close_reason is None:
                    samples.setdefault(sid, []).append((now, p.source.counters()))
                st = engine.streams.get(sid)
                if st is not None:
                    dropped_windows[sid] = st.windows_dropped
            await asyncio.wait([comm], timeout=0.5)
        stdout, _ = comm.result()
        callers = json.loads(stdout)
    finally:
        await server.close()
    cpu1 = os.times()
    wcpu = _worker_cpu_s(executor) - wcpu0
    rx = []
    for seq in samples.values():
        warm = [x for x in seq if x[0] >= seq[0][0] + 2.0] or seq  # skip the first 2 s (ramp-up)
        (ta, ca), (tb, cb) = warm[0], seq[-1]
        dt = max(1e-6, tb - ta)
        rx.append(
            {
                "decoded_fps": (cb["video_received"] - ca["video_received"]) / dt,
                "kept_fps": (cb["frames"] - ca["frames"]) / dt,
                "dropped_frames": cb["dropped_frames"],
            }
        )
    lat = np.array([v for c in callers["callers"] for v in c["latency_s"]], dtype=float)
    pub = np.array([v for c in callers["callers"] for v in c["publish_ms"]], dtype=float)
    pub = pub[np.isfinite(pub)]
    windows = sum(c["windows"] for c in callers["callers"])
    expected = callers["seconds"] - 2  # first window ends at 2 s (length 2, hop 1)
    dropped_w = sum(dropped_windows.values())
    min_ratio = min(c["windows"] for c in callers["callers"]) / max(1.0, expected)
    return {
        "n": n,
        "decoded_fps": float(np.mean([r["decoded_fps"] for r in rx])) if rx else 0.0,
        "kept_fps": float(np.mean([r["kept_fps"] for r in rx])) if rx else 0.0,
        "dropped_frames": int(sum(r["dropped_frames"] for r in rx)),
        "windows_per_s": windows / callers["seconds"],
        "min_window_ratio": min_ratio,
        "dropped_windows": int(dropped_w),
        "p50_ms": _pct(lat * 1000, 50),
        "p95_ms": _pct(lat * 1000, 95),
        "engine_p50_ms": _pct(pub, 50),
        "callers_cpu_pct": callers["cpu_pct"],
        "server_cpu_pct": 100
        * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + wcpu)
        / max(1e-6, cpu1.elapsed - cpu0.elapsed),
    }


async def main_async(args: argparse.Namespace) -> None:
    from affectstream.engine.config import load_settings
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.paths import profile_dir

    prof = Path(args.profile) if args.profile else profile_dir("lite")
    s = load_settings(None, {})
    analyzer, executor = None, None
    if args.backend == "process":  # warm worker processes, each with its own ONNX sessions
        from affectstream.engine.app import serve_executor_settings
        from affectstream.engine.executor.base import AnalyzerFactory, make_executor

        # as `affectstream serve` runs it: one worker fewer than the cores unless executor.workers is set
        s = serve_executor_settings(s)
        s = s.model_copy(update={"executor": s.executor.model_copy(update={"backend": "process"})})
        executor = make_executor(s, AnalyzerFactory.from_settings(s, profile_dir=str(prof), threads=1))
        await executor.start()
    else:
        analyzer = LiteAnalyzer.from_profile(prof, s.lite, runtime=s.runtime)
    load = os.getloadavg()
    print(f"# bench_webrtc: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"# {args.seconds:g} s per run, callers send 640x480 VP8 @ {args.fps} fps + Opus speech; "
        f"analysis: {args.backend} backend"
        + (f", {executor.n_workers} worker(s)" if executor is not None else "")
    )
    rows = []
    for n in [int(x) for x in args.callers.split(",")]:
        r = await measure(n, args.seconds, args.fps, analyzer, executor)
        rows.append(r)
        print(json.dumps(r), flush=True)
    if executor is not None:
        await executor.close()
    if analyzer is not None:
        analyzer.close()
    base = rows[0]
    print()
    hdr = (
        "| callers | decoded fps/caller | kept fps/caller | windows/s | min windows/expected | "
        "dropped win/frames | latency p50 ms | p95 ms | p95 vs N=1 | engine p50 ms | CPU % server/callers | real time |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    held = 0
    for r in rows:
        rt = r["min_window_ratio"] >= 0.9 and r["dropped_windows"] == 0 and r["p95_ms"] < args.max_p95 * 1000
        if rt:
            held = max(held, r["n"])
        print(
            f"| {r['n']} | {r['decoded_fps']:.1f} | {r['kept_fps']:.1f} | {r['windows_per_s']:.2f} | "
            f"{r['min_window_ratio']:.2f} | {r['dropped_windows']}/{r['dropped_frames']} | "
            f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p95_ms'] / base['p95_ms']:.2f}x | "
            f"{r['engine_p50_ms']:.0f} | "
            f"{r['server_cpu_pct']:.0f}/{r['callers_cpu_pct']:.0f} | {'yes' if rt else 'no'} |"
        )
    print(f"\nreal-time callers held (of those tried): {held}")
    load = os.getloadavg()
    print(f"# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--caller-process":
        url, n, seconds, fps = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(asyncio.run(run_callers(url, n, seconds, fps))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--callers", default="1,2,4", help="comma-separated caller counts (first = baseline)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--max-p95", type=float, default=1.5, help="real-time bound on p95 latency, s")
    ap.add_argument(
        "--backend",
        choices=("thread", "process"),
        default="thread",
        help="where the server analyses: one thread in its process, or warm worker processes",
    )
    ap.add_argument("--profile", help="lite profile folder (default: $AFFECTSTREAM_HOME/profiles/lite)")
    args = ap.parse_args()
    from affectstream.streams.web.ice import restrict_to_loopback

    restrict_to_loopback()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()

"""How many real-time streams one node holds: thread backend vs process backend, same run.

N live streams (N = 1, 2, 4, ...) replay a decoded clip at its real pace through the real chain
(windower → executor → smoother → MQTT on a real mosquitto on 127.0.0.1), all windows of all streams
closing at the same instant unless `--stagger` (the worst case the goal is stated for). Per backend
and N it reports windows/s, latency from window close to MQTT hand-off (p50/p95/max, nearest rank:
engine/metrics.py), windows dropped, CPU % (this process + worker processes, % of one core) and
memory (PSS of this process + workers, and the marginal MB per extra stream). The backends stay warm
for the whole run and take turns at each N, so both see the same machine load. A backend *holds* N
streams when nothing is dropped, every stream got ≥ 90 % of its windows and p95 ≤ the target (150 ms).

Clips: the bundled sample (384×384, 15 fps, a real face and speech) and a 640×480 15 fps version of it
(`--clip 640`), looped to `--seconds`. `--reasoning` also runs the slow path (llama.cpp) in this process.

    python bench/bench_capacity.py --streams 1,2,4,6,8,10,12 --seconds 15 --plot bench/capacity.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
TARGET_MS = 150.0


class LoopSource:
    """Pre-decoded media replayed from memory at real pace (a live source), looped to `seconds`."""

    duration = None

    def __init__(self, stream_id: str, items: list[Any], clip_s: float, seconds: float, delay: float = 0.0):
        from affectstream.streams.sources.base import SourceStats

        self.stream_id = stream_id
        self.items = items
        self.clip_s = clip_s
        self.seconds = seconds
        self.delay = delay
        self.live = True
        self.stats = SourceStats()

    async def __aiter__(self) -> Any:
        from affectstream.engine.types import AudioChunk, VideoFrame

        await asyncio.sleep(self.delay)
        t0 = time.monotonic()
        loops = int(self.seconds // self.clip_s) + 1
        n_frames = sum(1 for it in self.items if isinstance(it, VideoFrame))
        for k in range(loops):
            off = k * self.clip_s
            for it in self.items:
                if isinstance(it, VideoFrame):
                    it = VideoFrame(it.ts + off, it.image, it.index + k * n_frames)
                    due = it.ts
                else:
                    it = AudioChunk(it.ts + off, it.samples, it.sample_rate)
                    due = it.end
                if due > self.seconds:
                    return
                wait = t0 + due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                yield it

    async def close(self) -> None:
        return None


async def decode(clip: Path) -> list[Any]:
    from affectstream.streams.sources.file import FileSource

    return [it async for it in FileSource(clip, "decode")]


def to_640(items: list[Any]) -> list[Any]:
    import cv2
    from affectstream.engine.types import VideoFrame

    out = []
    for it in items:
        if isinstance(it, VideoFrame):
            it = VideoFrame(it.ts, cv2.resize(it.image, (640, 480), interpolation=cv2.INTER_LINEAR), it.index)
        out.append(it)
    return out


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    """Proportional set size (MB): shared pages (the frames' shared memory, libraries) are split between
    the processes that map them, so the sum over the engine's processes is its real footprint."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0.0


def worker_pids(executor: Any) -> list[int]:
    st = executor.stats()
    return [w["pid"] for w in st.get("per_worker", []) if w.get("pid")]


async def run_once(
    settings: Any,
    executor: Any,
    n: int,
    items: list[Any],
    clip_s: float,
    seconds: float,
    port: int,
    tag: str,
    stagger: bool,
    reasoning: bool,
) -> dict[str, Any]:
    from affectstream.engine.app import make_mqtt_sink
    from affectstream.engine.metrics import summarize
    from affectstream.engine.pipeline import Pipeline
    from affectstream.engine.smoother import Smoother

    sink = make_mqtt_sink(settings.mqtt, f"mqtt://127.0.0.1:{port}")
    pipe = Pipeline(settings, None, [sink], smoother=Smoother(), node_id="bench", executor=executor)
    slow = None
    if reasoning:
        from affectstream.engine.app import ensure_profile
        from affectstream.engine.llm.scheduler import build_lite_slow_path

        slow = build_lite_slow_path(settings, ensure_profile("lite"), pipe.publish_reasoning)
        pipe.slow_path = slow
    hop = settings.window.hop
    srcs = [
        LoopSource(f"{tag}{i}", items, clip_s, seconds, delay=(i * hop / n if stagger else 0.0))
        for i in range(n)
    ]
    pids = [os.getpid(), *worker_pids(executor)]
    cpu0 = {p: cpu_seconds(p) for p in pids}
    t0 = time.perf_counter()
    await pipe.run(srcs)
    wall = time.perf_counter() - t0
    cpu = sum(cpu_seconds(p) - cpu0[p] for p in pids) / wall * 100
    rss = sum(rss_mb(p) for p in pids)
    rstats = slow.stats() if slow is not None else None
    if slow is not None:
        slow.close()
    lat: list[float] = []
    per_stream = []
    for st in pipe.streams.values():
        lat += st.latency.values()
        per_stream.append(st.windows_analyzed)
    expected = max(1, int((seconds - settings.window.length) / hop) + 1)
    s = summarize(lat, 1)
    return {
        "backend": executor.name,
        "streams": n,
        "windows": sum(per_stream),
        # per second of media (the run's wall time also holds the drain of the reasoning slow path)
        "windows_per_s": round(sum(per_stream) / seconds, 2),
        "p50_ms": s["p50"],
        "p95_ms": s["p95"],
        "max_ms": s["max"],
        "analyze_p50_ms": summarize(pipe.analyze_latency.values(), 1)["p50"],
        "dropped": sum(st.windows_dropped for st in pipe.streams.values()),
        "min_windows_ratio": round(min(per_stream) / expected, 2),
        "cpu_pct": round(cpu, 1),
        "rss_mb": round(rss, 1),
        "rss_mb_per_stream": round(rss / n, 1),
        "reasoning": rstats,
    }


def held(r: dict[str, Any]) -> bool:
    return r["dropped"] == 0 and r["min_windows_ratio"] >= 0.9 and (r["p95_ms"] or 1e9) <= TARGET_MS


async def make_backend(backend: str, settings: Any) -> tuple[Any, Any, Any]:
    """(settings, started executor, in-process analyzer or None) for one backend."""
    from affectstream.engine.app import ensure_profile
    from affectstream.engine.executor.base import AnalyzerFactory, make_executor
    from affectstream.engine.lite import LiteAnalyzer

    prof = ensure_profile("lite")
    # "process-late": the process backend with early frames off (the frames wait for their window)
    kind, early = (
        ("process", False) if backend == "process-late" else (backend, settings.executor.early_frames)
    )
    s = settings.model_copy(
        update={"executor": settings.executor.model_copy(update={"backend": kind, "early_frames": early})}
    )
    analyzer = None
    if kind == "thread":
        analyzer = LiteAnalyzer.from_profile(prof, s.lite)
        ex = make_executor(s, analyzer=analyzer)
    else:
        ex = make_executor(s, AnalyzerFactory.from_settings(s, profile_dir=str(prof), threads=1))
    t = time.perf_counter()
    await ex.start()
    print(f"[{backend}] started in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return s, ex, analyzer


async def bench(
    backends: list[str], settings: Any, args: argparse.Namespace, items: list[Any], clip_s: float, port: int
) -> list[dict[str, Any]]:
    """Both backends stay warm for the whole run and take turns at each N, so they see the same load."""
    made = {b: await make_backend(b, settings) for b in backends}
    rows: list[dict[str, Any]] = []
    fails = dict.fromkeys(backends, 0)
    try:
        for b, (s, ex, _) in made.items():
            # warm-up: sessions, allocators, the per-stream caches of throwaway streams
            await run_once(s, ex, 2, items, clip_s, 4.0, port, f"warm-{b}-", True, False)
        for n in args.streams:
            for b, (s, ex, _) in made.items():
                if args.skip_after and fails[b] >= args.skip_after:
                    rows.append({"backend": b, "streams": n, "skipped": f"dropped at {fails[b]} smaller N"})
                    continue
                r = await run_once(
                    s, ex, n, items, clip_s, args.seconds, port, f"{b}{n}-", args.stagger, args.reasoning
                )
                r["backend"] = b  # the label asked for (process-late runs the process backend)
                r["early_frames_total"] = ex.stats().get("early_frames")
                r["held"] = held(r)
                r["load1"] = round(os.getloadavg()[0], 1)
                fails[b] = fails[b] + 1 if r["dropped"] else 0
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        for _, ex, analyzer in made.values():
            await ex.close()
            if analyzer is not None:
                analyzer.close()
    return sorted(rows, key=lambda r: (backends.index(r["backend"]), r["streams"]))


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backend | streams | windows/s | p50 ms | p95 ms | max ms | analysis p50 ms | dropped "
        "| min windows/expected | CPU % | memory MB, PSS (+MB per extra stream) | held |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    base = {r["backend"]: r["rss_mb"] for r in rows if r["streams"] == 1 and "skipped" not in r}
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {r['backend']} | {r['streams']} | – | – | – | – | – | – | – | – | – | not run ({r['skipped']}) |"
            )
            continue
        b1 = base.get(r["backend"])
        marginal = (
            "–" if b1 is None or r["streams"] == 1 else f"{(r['rss_mb'] - b1) / (r['streams'] - 1):+.1f}"
        )
        lines.append(
            f"| {r['backend']} | {r['streams']} | {r['windows_per_s']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{r['max_ms']} | {r['analyze_p50_ms']} | {r['dropped']} | {r['min_windows_ratio']} | {r['cpu_pct']} | "
            f"{r['rss_mb']:.0f} ({marginal}) | {'yes' if r['held'] else 'no'} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for backend in sorted({r["backend"] for r in rows}):
        pts = [(r["streams"], r["p95_ms"]) for r in rows if r["backend"] == backend and "skipped" not in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=f"{backend} backend")
    ax.axhline(TARGET_MS, color="grey", linestyle="--", label=f"target {TARGET_MS:.0f} ms")
    ax.set_xlabel("real-time streams")
    ax.set_ylabel("window close → MQTT p95 (ms)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summary(rows: list[dict[str, Any]]) -> str:
    def most(b: str) -> int:
        return max([r["streams"] for r in rows if r["backend"] == b and r.get("held")] or [0])

    t, p = most("thread"), most("process")
    one = {r["backend"]: r for r in rows if r["streams"] == 1 and "skipped" not in r}
    out = [
        f"streams held (p95 ≤ {TARGET_MS:.0f} ms, no drops): thread {t}, process {p}"
        + (f" → {p / t:.1f}×" if t else "")
    ]
    if "thread" in one and "process" in one:
        a, b = one["thread"], one["process"]
        out.append(
            f"single stream p50/p95: thread {a['p50_ms']}/{a['p95_ms']} ms, process {b['p50_ms']}/{b['p95_ms']} ms "
            f"(process/thread p95 ratio {b['p95_ms'] / a['p95_ms']:.2f})"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--streams", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 6, 8, 10, 12]
    )
    ap.add_argument(
        "--backends",
        default="thread,process",
        help="comma list of thread, process, process-late (process with executor.early_frames off)",
    )
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each run (clip looped)")
    ap.add_argument("--clip", default="sample", help="'sample' (384×384) or '640' (the sample at 640×480)")
    ap.add_argument("--stagger", action="store_true", help="offset streams by hop/N (default: aligned)")
    ap.add_argument("--reasoning", action="store_true", help="also run the LLM slow path")
    ap.add_argument("--workers", type=int, default=None, help="process backend workers (default: cores)")
    ap.add_argument("--max-batch", type=int, default=None)
    ap.add_argument(
        "--skip-after", type=int, default=0, help="skip larger N after K runs with drops (0: never)"
    )
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--plot", type=Path, default=None, help="PNG of p95 vs streams")
    args = ap.parse_args()

    from affectstream.engine.config import load_settings
    from bench_chain import start_mosquitto

    over: dict[str, Any] = {
        "mqtt.node_id": "bench",
        "progress": False,
        "reasoning.enabled": args.reasoning,
        "executor.stagger": False,  # the sources themselves are offset with --stagger
    }
    if args.workers:
        over["executor.workers"] = args.workers
    if args.max_batch:
        over["executor.max_batch"] = args.max_batch
    settings = load_settings(None, over)
    items = asyncio.run(decode(ROOT / "examples" / "sample.mp4"))
    clip_s = 10.0
    if args.clip == "640":
        items = to_640(items)
    mosq, port, _tmp = start_mosquitto()
    load0 = os.getloadavg()
    try:
        rows = asyncio.run(bench(args.backends.split(","), settings, args, items, clip_s, port))
    finally:
        mosq.terminate()
        mosq.wait(5)
    load1 = os.getloadavg()
    mode = "staggered by hop/N" if args.stagger else "all windows closing together"
    title = (
        f"{os.cpu_count()} cores, clip {args.clip}, {mode}, reasoning {'on' if args.reasoning else 'off'}, "
        f"load avg {load0[0]:.1f}→{load1[0]:.1f}"
    )
    print(f"# {title}")
    print(table(rows))
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps({"title": title, "rows": rows}, indent=1))
    if args.plot:
        plot(rows, args.plot, title)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()

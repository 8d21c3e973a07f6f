"""The Ray executor backend vs the local process backend: windows/s and per-window overhead.

Same windows, same run, backends interleaved (process, ray, process, ray, ...) so load swings hit both:
the real `lite` analyzer on the windows of `--clip` (default examples/sample.mp4, real face and speech),
decoded and windowed once in memory, `--streams` copies under distinct stream ids.

Per backend and round:
- **start** — seconds until every worker/actor has loaded its models;
- **overhead** — one stream, one window in flight: submit → result minus the analyzer's own time for that
  window (`latency_ms["analyze"]`), i.e. what the transport costs per window (shared memory + pipes for
  the process backend; object store + actor calls for Ray); median ms;
- **throughput** — all streams at once, the executor's capacity in flight: windows/s.

Ray runs as a local one-node cluster on 127.0.0.1 with `--workers` CPUs and analyzer actors; the
process backend has `--workers` worker processes.

Usage: python bench/bench_ray.py [--streams 4] [--workers 2] [--rounds 2] [--clip PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]


async def windows_of(clip: Path, settings: Any) -> list[Any]:
    from affectstream.streams.sources.file import FileSource
    from affectstream.streams.windower import Windower

    w = settings.window
    win = Windower("x", length=w.length, hop=w.hop, n_frames=w.frames, max_skew=10.0)
    out: list[Any] = []
    src = FileSource(clip, "x")
    async for item in src:
        out += win.push(item)
    out += win.flush()
    await src.close()
    return out


def retag(windows: list[Any], stream: str) -> list[Any]:
    return [replace(w, stream_id=stream, closed_at=time.monotonic()) for w in windows]


async def measure(ex: Any, windows: list[Any], streams: int, tag: str) -> dict[str, float]:
    t0 = time.perf_counter()
    await ex.start()
    start_s = time.perf_counter() - t0
    # overhead: one window in flight
    over = []
    for w in retag(windows, f"{tag}-seq"):
        t = time.perf_counter()
        r = await ex.submit(w)
        over.append((time.perf_counter() - t) * 1000 - float(r.latency_ms.get("analyze", 0.0)))
    # throughput: every stream, up to capacity in flight, per-stream order kept by the executor
    queues = [retag(windows, f"{tag}-s{i}") for i in range(streams)]
    order = [q[k] for k in range(len(windows)) for q in queues]
    cap = max(1, int(ex.capacity))
    pending: set[asyncio.Future[Any]] = set()
    every: list[asyncio.Future[Any]] = []
    t = time.perf_counter()
    for w in order:
        while len(pending) >= cap:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        fut = ex.submit(w)
        pending.add(fut)
        every.append(fut)
    await asyncio.gather(*pending)
    wall = time.perf_counter() - t
    analyze = [float(f.result().latency_ms.get("analyze", 0.0)) for f in every]
    st = ex.stats()
    if "per_worker" in st:  # process backend
        calls = sum(w["batches"] for w in st["per_worker"])
        done = sum(w["completed"] for w in st["per_worker"])
    else:  # ray backend: the actors' own counters
        info = await ex.actor_info()
        calls = sum(i.get("batches", 0) for i in info)
        done = sum(i.get("windows", 0) for i in info)
    await ex.close()
    return {
        "start_s": start_s,
        "overhead_ms": statistics.median(over),
        "overhead_p95_ms": sorted(over)[int(0.95 * (len(over) - 1))],
        "windows_s": len(order) / wall,
        "analyze_ms": statistics.median(analyze),
        "batch": done / max(1, calls),  # windows per analyzer call, over the whole round
        "failed": float(st.get("failed", 0)),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clip", type=Path, default=ROOT / "examples" / "sample.mp4")
    ap.add_argument("--profile-dir", default=None, help="prepared lite profile (default: the usual place)")
    a = ap.parse_args()

    from affectstream.engine.config import Settings
    from affectstream.engine.executor.base import AnalyzerFactory
    from affectstream.engine.executor.process import ProcessExecutor
    from affectstream.engine.executor.ray_backend import RayExecutor, RayPoolOptions, connect

    settings = Settings(reasoning={"enabled": False}, executor={"backend": "process", "workers": a.workers})
    factory = AnalyzerFactory.from_settings(settings, profile_dir=a.profile_dir, threads=1)
    windows = await windows_of(a.clip, settings)
    connect(None, num_cpus=a.workers)
    res: dict[str, list[dict[str, float]]] = {"process": [], "ray": []}
    for rnd in range(a.rounds):
        for name in ("process", "ray"):
            if name == "process":
                ex: Any = ProcessExecutor(factory, settings=settings.executor, workers=a.workers)
            else:
                ex = RayExecutor(
                    factory,
                    options=RayPoolOptions(
                        actors=a.workers, max_batch=settings.executor.max_batch, name=f"bench-{rnd}"
                    ),
                    connect_ray=False,
                )
            r = await measure(ex, windows, a.streams, f"{name}{rnd}")
            res[name].append(r)
            print(f"round {rnd} {name}: " + ", ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    med = {n: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for n, rs in res.items()}
    print(f"\n{len(windows)} windows per stream, {a.streams} streams, {a.workers} workers/actors; {load}")
    print(
        "| backend | start s | overhead ms/window p50 (p95) | windows/s | analyzer ms/window | windows/call | failed |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in ("process", "ray"):
        m = med[n]
        print(
            f"| {n} | {m['start_s']:.1f} | {m['overhead_ms']:.2f} ({m['overhead_p95_ms']:.2f}) | "
            f"{m['windows_s']:.1f} | {m['analyze_ms']:.1f} | {m['batch']:.1f} | {m['failed']:.0f} |"
        )
    print(
        f"ray/process: windows/s ×{med['ray']['windows_s'] / med['process']['windows_s']:.2f}, "
        f"overhead +{med['ray']['overhead_ms'] - med['process']['overhead_ms']:.2f} ms/window"
    )
    led = await ledger(500)
    print(
        f"ledger (one registry actor, what every published window costs a stream actor): commit round trip "
        f"p50 {led['p50_ms']:.2f} ms (p95 {led['p95_ms']:.2f}); {led['rate']:.0f} commits/s with 8 concurrent callers"
    )
    import ray

    ray.shutdown()


async def ledger(n: int) -> dict[str, float]:
    """The per-window write-ahead commit of a stream actor, measured from this driver."""
    import ray
    from affectstream.engine.distributed.registry import Registry

    reg = ray.remote(Registry).options(num_cpus=0).remote()

    async def call(*a: Any) -> Any:
        return await asyncio.wrap_future(reg.commit.remote(*a).future())

    epochs = [ray.get(reg.fence.remote(f"s{i}")) for i in range(8)]
    rt = []
    for k in range(n):
        t = time.perf_counter()
        await call("s0", epochs[0], k)
        rt.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    await asyncio.gather(*(call(f"s{i}", epochs[i], n + k) for k in range(n // 8) for i in range(8)))
    rate = (n // 8) * 8 / (time.perf_counter() - t)
    ray.kill(reg)
    rt.sort()
    return {"p50_ms": statistics.median(rt), "p95_ms": rt[int(0.95 * (len(rt) - 1))], "rate": rate}


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Soak: N real-time streams through one engine process for M minutes; does memory stay flat?

What runs is what an operator runs: `affectstream run` on N live UDP MPEG-TS streams (ffmpeg loops the
bundled sample at real speed to 127.0.0.1), publishing to a real mosquitto on 127.0.0.1. This script
subscribes to the window topics, samples the resident memory (RSS) of the engine's whole process tree
(the engine and any analysis worker processes) every few seconds, and at the end stops the engine with
SIGTERM like a service manager would.

Reports: RSS growth between the 2nd minute and the last minute (the goal: < 5 %) of the engine, of its
process tree, and of the tree's private anonymous and shared memory separately (see `tree_memory_kib`),
RSS per minute, windows received per stream against the windows the elapsed time allows, the SIGTERM
exit code and how long the stop took.
Not part of CI (it takes `--minutes`); results go to bench/RESULTS.md by hand, with the machine load.

Usage: python bench/bench_soak.py [--minutes 20] [--streams 4] [--reasoning] [--out soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _broker import free_port, start_mosquitto

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.mp4"
NODE = "soak"


def start_sender(port: int) -> subprocess.Popen[bytes]:
    """ffmpeg replays the sample forever at its own speed as MPEG-TS over UDP to 127.0.0.1."""
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is not installed: apt-get install ffmpeg")
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(SAMPLE),
         "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssShmem"):
                out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def tree_memory_kib(pid: int) -> tuple[int, int, int, int]:
    """Memory of `pid` and its descendants (the analysis worker processes), in KiB, from /proc:
    (engine RSS, tree RSS, tree private anonymous memory, tree shared memory). RSS counts a shared
    memory segment once per process that touched it, so a frame pool shared with workers shows up
    twice and grows as its segments are first used; private anonymous memory is what a leak grows."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    engine = _status_kib(pid).get("VmRSS", 0)
    rss = anon = shm = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        st = _status_kib(p)
        rss, anon, shm = rss + st.get("VmRSS", 0), anon + st.get("RssAnon", 0), shm + st.get("RssShmem", 0)
        todo.extend(children.get(p, []))
    return engine, rss, anon, shm


async def count_windows(port: int, counts: dict[str, int], stop: asyncio.Event) -> None:
    import aiomqtt

    while not stop.is_set():
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier=f"soak-sub-{os.getpid()}") as c:
                await c.subscribe(f"affectstream/{NODE}/+/window", qos=0)
                async for m in c.messages:
                    stream = str(m.topic).split("/")[2]
                    counts[stream] = counts.get(stream, 0) + 1
                    if stop.is_set():
                        return
        except aiomqtt.MqttError:
            await asyncio.sleep(0.5)


async def soak(args: argparse.Namespace) -> dict[str, object]:
    broker, mport, _ = start_mosquitto("soak-mosq-")
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(args.streams)]
    log = Path(args.log)
    cmd = [
        sys.executable, "-m", "affectstream.engine.cli", "run",
        *[f"s{i}=udp://127.0.0.1:{p}" for i, p in enumerate(ports)],
        "--mqtt", f"mqtt://127.0.0.1:{mport}", "--node-id", NODE, "-q", "--no-progress",
    ]  # fmt: skip
    if not args.reasoning:
        cmd.append("--no-reasoning")
    counts: dict[str, int] = {}
    stop = asyncio.Event()
    sub = asyncio.create_task(count_windows(mport, counts, stop))
    senders: list[subprocess.Popen[bytes]] = []
    samples: list[tuple[float, int, int, int, int]] = []
    load_start = os.getloadavg()
    with log.open("w") as logf:
        engine = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=logf, cwd=ROOT)
        try:
            # the engine loads its models first; streams start when windows could be analysed
            await asyncio.sleep(args.warmup)
            senders = [start_sender(p) for p in ports]
            t0 = time.monotonic()
            end = t0 + args.minutes * 60
            while time.monotonic() < end:
                if engine.poll() is not None:
                    raise SystemExit(f"engine exited early with {engine.returncode}; see {log}")
                samples.append((time.monotonic() - t0, *tree_memory_kib(engine.pid)))
                await asyncio.sleep(args.interval)
            elapsed = time.monotonic() - t0
            load_end = os.getloadavg()
            t_sig = time.monotonic()
            engine.send_signal(signal.SIGTERM)
            rc = await asyncio.to_thread(engine.wait, 60)
            stop_s = time.monotonic() - t_sig
        finally:
            for s in senders:
                s.terminate()
            if engine.poll() is None:
                engine.kill()
            stop.set()
            sub.cancel()
            broker.terminate()
    last = max(60.0, elapsed - 60.0)

    def minute(lo: float, hi: float, col: int) -> float:
        vals = [s[col] for s in samples if lo <= s[0] < hi]
        return float(statistics.mean(vals)) if vals else float("nan")

    out: dict[str, object] = {"minutes": args.minutes, "streams": args.streams, "reasoning": args.reasoning}
    for col, name in ((1, "engine"), (2, "tree"), (3, "tree_anon"), (4, "tree_shm")):
        m2, ml = minute(60, 120, col), minute(last, elapsed + 1, col)
        out[f"rss_{name}_minute2_mib"] = round(m2 / 1024, 1)
        out[f"rss_{name}_last_minute_mib"] = round(ml / 1024, 1)
        out[f"rss_{name}_growth_pct"] = round((ml - m2) / m2 * 100, 2) if m2 else None
    per_minute = []  # the shape of the curve: a start-up ramp that flattens, or steady growth (a leak)
    for m in range(int(elapsed // 60) + 1):
        row = [minute(m * 60, (m + 1) * 60, c) for c in (1, 2, 3, 4)]
        if row[0] == row[0]:  # not NaN
            per_minute.append([m + 1, *(round(v / 1024, 1) for v in row)])
    out["rss_per_minute_mib"] = per_minute  # [minute (1 = first), engine, tree, tree anon, tree shm]
    expected = int(elapsed // 1.0)  # hop 1 s: one window per second per stream once it runs
    out.update(
        elapsed_s=round(elapsed, 1),
        windows=dict(sorted(counts.items())),
        windows_expected_per_stream_max=expected,
        exit_code=rc,
        stop_s=round(stop_s, 2),
        load_start=[round(x, 2) for x in load_start],
        load_end=[round(x, 2) for x in load_end],
        rss_samples=len(samples),
    )
    Path(args.out).write_text(json.dumps({**out, "samples": samples}, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--reasoning", action="store_true", help="keep the LLM slow path on (default off)")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds for the engine to load models")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--out", default="soak.json")
    ap.add_argument("--log", default="soak-engine.log")
    args = ap.parse_args()
    out = asyncio.run(soak(args))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

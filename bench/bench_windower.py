"""Cost of the windower and of the file source's thread hand-off, each against a baseline in the same run.

1. Windower vs a naive windower that buffers every frame and runs the midpoint rule over the buffer
   when a window closes (what a straightforward implementation does). Same synthetic 30 fps + 16 kHz
   timeline (60 s), same windows out; reports µs per pushed item, ms per emitted window, windows/s,
   the peak number of frames each keeps alive, and the ratio.
2. FileSource (decode thread → bounded hand-off → event loop) vs a bare PyAV decode loop on the same
   clip in the same process: items/s and the hand-off overhead ratio.

Run: python bench/bench_windower.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
from affectstream.engine.types import AudioChunk, VideoFrame, Window
from affectstream.streams.windower import Windower, nearest_frames

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


class NaiveWindower:
    """Baseline: keep every frame/chunk of the last `length` s; select frames by scanning the buffer."""

    def __init__(self, length: float = 2.0, hop: float = 1.0, n: int = 8) -> None:
        self.length, self.hop, self.n = length, hop, n
        self.frames: deque[VideoFrame] = deque()
        self.audio: deque[AudioChunk] = deque()
        self.k = 0
        self.peak = 0

    def push(self, item: VideoFrame | AudioChunk) -> list[Window]:
        (self.frames if isinstance(item, VideoFrame) else self.audio).append(item)
        self.peak = max(self.peak, len(self.frames))
        out = []
        v_end = self.frames[-1].ts if self.frames else -1.0
        a_end = self.audio[-1].end if self.audio else -1.0
        while min(v_end, a_end) >= self.k * self.hop + self.length:
            s, e = self.k * self.hop, self.k * self.hop + self.length
            fr = nearest_frames(list(self.frames), s, e, self.n)
            pcm = np.concatenate([c.samples for c in self.audio if c.end > s and c.ts < e])
            out.append(Window("b", self.k, s, e, fr, pcm))
            self.k += 1
            while self.frames and self.frames[0].ts < self.k * self.hop:
                self.frames.popleft()
            while self.audio and self.audio[0].end <= self.k * self.hop:
                self.audio.popleft()
        return out


def timeline(seconds: float) -> list[VideoFrame | AudioChunk]:
    img = np.zeros((480, 640, 3), np.uint8)  # one shared image: this measures bookkeeping, not memcpy
    items: list[VideoFrame | AudioChunk] = [VideoFrame(i / 30, img, i) for i in range(int(seconds * 30))]
    pcm = np.zeros(1024, np.float32)
    items += [AudioChunk(p / 16000, pcm) for p in range(0, int(seconds * 16000), 1024)]
    items.sort(key=lambda x: x.ts)
    return items


def bench_windower(seconds: float, reps: int = 5) -> dict[str, float]:
    """Best of `reps` runs, the two implementations interleaved so CPU contention hits both alike."""
    items = timeline(seconds)
    makers = {"windower": lambda: Windower("b"), "naive": NaiveWindower}
    best = dict.fromkeys(makers, float("inf"))
    n_win = dict.fromkeys(makers, 0)
    for _ in range(reps):
        for name, make in makers.items():
            w = make()
            n = 0
            t = time.perf_counter()
            for it in items:
                n += len(w.push(it))
            best[name] = min(best[name], time.perf_counter() - t)
            n_win[name] = n
    res: dict[str, float] = {}
    for name in makers:
        res[f"{name}_us_per_item"] = best[name] / len(items) * 1e6
        res[f"{name}_ms_per_window"] = best[name] / n_win[name] * 1e3
        res[f"{name}_windows_per_s"] = n_win[name] / best[name]
        res[f"{name}_windows"] = n_win[name]
    # untimed passes: how many distinct frames each keeps alive at most
    w = Windower("b")
    peak = 0
    for it in items:
        w.push(it)
        peak = max(peak, len({id(f) for s in w._slots.values() for f in s.frames()}))
    res["windower_peak_frames_held"] = peak
    nv = NaiveWindower()
    for it in items:
        nv.push(it)
    res["naive_peak_frames_held"] = nv.peak
    return res


async def _source_items(clip: Path) -> int:
    from affectstream.streams.sources.file import FileSource

    return sum([1 async for _ in FileSource(clip, "b")])


def _bare_decode(clip: Path) -> int:
    import av

    n = 0
    with av.open(str(clip)) as c:
        rs = av.AudioResampler(format="flt", layout="mono", rate=16000)
        for pkt in c.demux():
            for f in pkt.decode():
                if pkt.stream.type == "video":
                    f.to_ndarray(format="bgr24")
                    n += 1
                else:
                    n += len(rs.resample(f))
    return n


def bench_source() -> dict[str, float]:
    from media import write_clip

    with tempfile.TemporaryDirectory() as d:
        clip = write_clip(Path(d) / "b.mp4", seconds=10.0, fps=30, size=(640, 480))
        res: dict[str, float] = {}
        for name, fn in (
            ("bare_pyav", lambda: _bare_decode(clip)),
            ("file_source", lambda: asyncio.run(_source_items(clip))),
        ):
            best, n = float("inf"), 0
            for _ in range(3):
                t = time.perf_counter()
                n = fn()
                best = min(best, time.perf_counter() - t)
            res[f"{name}_items_per_s"] = n / best
            res[f"{name}_s"] = best
        return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    w = bench_windower(args.seconds)
    print(
        f"windower, {args.seconds:.0f} s of 30 fps video + 16 kHz audio in 1024-sample chunks, length 2 / hop 1 / N 8"
    )
    for name in ("windower", "naive"):
        print(
            f"  {name:9s} {w[name + '_us_per_item']:7.2f} us/item  {w[name + '_ms_per_window']:6.3f} ms/window  "
            f"{w[name + '_windows_per_s']:9.0f} windows/s  peak frames held {w[name + '_peak_frames_held']:.0f}"
        )
    print(f"  speed ratio naive/windower: {w['naive_us_per_item'] / w['windower_us_per_item']:.2f}x")
    s = bench_source()
    print("file source, 10 s 640x480 30 fps mpeg4 + AAC clip (decode + BGR + resample)")
    for name in ("bare_pyav", "file_source"):
        print(f"  {name:11s} {s[name + '_items_per_s']:8.0f} items/s  ({s[name + '_s']:.3f} s)")
    print(f"  hand-off overhead: file_source time / bare time = {s['file_source_s'] / s['bare_pyav_s']:.2f}x")


if __name__ == "__main__":
    main()

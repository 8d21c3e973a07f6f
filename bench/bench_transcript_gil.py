"""Does a Whisper transcription in a SCHED_IDLE thread keep the fast path from the GIL?

    python bench/bench_transcript_gil.py [--seconds 2] [--rounds 3]

Why: with the slow path under SCHED_IDLE the fast path's remaining tail comes from windows that overlap a
transcription. If the transcript thread held the GIL for long stretches, a separate process would remove
that; if not, the cause is shared hardware (caches, memory bandwidth) and a process would not help.
Method: the main thread sleeps 2 ms at a time and records how late it wakes (it needs the GIL to
continue), first with the transcriber idle, then during each of `--rounds` transcriptions of 4 s of the
test suite's speech clip (`tests/media.py`). Prints one JSON object: lateness p50 / p99 / max in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lateness(seconds: float, tick_s: float = 0.002) -> dict[str, float]:
    late: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        time.sleep(tick_s)
        late.append((time.perf_counter() - t0 - tick_s) * 1000)
    late.sort()
    return {
        "n": len(late),
        "p50_ms": round(late[len(late) // 2], 2),
        "p99_ms": round(late[int(len(late) * 0.99)], 2),
        "max_ms": round(late[-1], 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    from affectstream.engine.models.transcript import Transcriber
    from affectstream.engine.paths import profile_dir
    from affectstream.engine.profile import Profile

    sys.path.insert(0, str(ROOT / "tests"))
    from media import beckett_audio  # the suite's own speech clip (generated/shipped test media)

    prof = Profile.load(profile_dir("lite"), verify=False)
    audio = beckett_audio()[: 16000 * 4]
    t = Transcriber(prof.path("whisper"), threads=1, min_interval_s=0.0, idle=True)
    try:
        out: dict[str, object] = {"cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}
        out["idle"] = lateness(a.seconds)
        during = []
        for i in range(a.rounds):
            t.submit("bench", i, audio)
            during.append(lateness(a.seconds))
            if t.wait_for("bench", i, timeout=60) is None:
                raise SystemExit("transcription did not finish within 60 s")
        out["during_transcription"] = during
    finally:
        t.close()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

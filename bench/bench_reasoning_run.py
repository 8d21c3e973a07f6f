"""Reasoning and fast-path latency inside `affectstream run --realtime`: a baseline prompt layout and
adapter against a new one, with the fast path alone as the reference.

    python bench/bench_reasoning_run.py [--clip examples/sample.mp4] [--reps 2] \
        [--new-lora RUN/sft/adapter.gguf] [--new-layout LAYOUT] [--old-lora A.gguf] [--old-layout evidence] \
        [--attribute] [--nice-baseline]

Three configurations (more with the options below), each run `--reps` times, interleaved (A, B, C, A, B,
C) so machine load hits all:
- `off`: `--no-reasoning` (the fast path alone; the transcript follows reasoning, so it is off too);
- `old`: the baseline layout + adapter (default: `evidence` + train/artifacts/lite-evidence-lora.gguf,
  the adapter shipped before the `compact` one), transcript on;
- `new`: `--new-layout` + `--new-lora` (default: the profile's pinned adapter in its layout), transcript on.
`--attribute` adds `words` (transcript on, no reasoning) and `llm` (new reasoning, transcript off) to split
the fast path's cost between Whisper and the LLM; `--nice-baseline` adds `nice` (new reasoning with the
slow-path threads at nice 10 instead of SCHED_IDLE).
Every window is offered to the reasoner (`reasoning.every_n = 1`); one generation in flight per stream,
the others are skipped and counted, as in production. Latencies come from the published messages
(`--jsonl`): `reasoning.latency_ms` and `window.latency_ms.fast_path`. Prints one JSON object with
p50/p95 per configuration and the ratios new/old (reasoning) and new/off, old/off (fast path).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from affectstream.engine.llm.prompt import LAYOUTS
from affectstream.engine.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]


def pct(xs: list[float], q: float) -> float | None:
    v = percentile(xs, q)  # the one nearest-rank definition shared with stats
    return None if v is None else round(v, 1)


def run_once(clip: Path, env_extra: dict[str, str], args: list[str]) -> tuple[list[float], list[float], int]:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "out.jsonl"
        env = {**os.environ, "AFFECTSTREAM_REASONING__EVERY_N": "1", **env_extra}
        cmd = [
            sys.executable,
            "-m",
            "affectstream.engine.cli",
            "run",
            str(clip),
            "--realtime",
            "--no-mqtt",
            "-q",
        ]
        r = subprocess.run(
            [*cmd, "--jsonl", str(out), *args], env=env, capture_output=True, text=True, timeout=600
        )
        if r.returncode != 0:
            raise SystemExit(f"run failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        reason, fast, invalid = [], [], 0
        for line in out.read_text().splitlines():
            d = json.loads(line)
            kind = str(d.get("schema", "")).split("/")[0]
            if kind == "affectstream.reasoning":
                reason.append(float(d["latency_ms"]))
                invalid += int(not d["valid"])
            elif kind == "affectstream.window":
                fast.append(float(d["latency_ms"].get("fast_path", 0.0)))
        return reason, fast, invalid


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", type=Path, default=ROOT / "examples" / "sample.mp4")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--new-lora", type=Path, default=None, help="default: the profile's pinned adapter")
    ap.add_argument(
        "--new-layout", choices=LAYOUTS, default=None, help="default: the pinned adapter's layout"
    )
    ap.add_argument(
        "--old-lora",
        type=Path,
        default=ROOT / "train" / "artifacts" / "lite-evidence-lora.gguf",
        help="the baseline adapter (the previously shipped one)",
    )
    ap.add_argument("--old-layout", choices=LAYOUTS, default="evidence")
    ap.add_argument(
        "--attribute",
        action="store_true",
        help="two more configurations to split the fast path's cost: `words` (transcript on, no reasoning) "
        "and `llm` (the new reasoning with the transcript off)",
    )
    ap.add_argument(
        "--nice-baseline",
        action="store_true",
        help="one more configuration, `nice`: the new reasoning with the slow-path threads at nice 10 "
        "instead of SCHED_IDLE (reasoning.idle / lite.transcript_idle off; the default before 2026-12-05)",
    )
    a = ap.parse_args()

    def reasoning(layout: str | None, lora: Path | None) -> dict[str, str]:
        # the transcript follows reasoning (on): both sides run the production defaults but for the model;
        # no layout: the engine's `auto` (the pinned adapter's layout)
        return ({"AFFECTSTREAM_REASONING__LAYOUT": layout} if layout else {}) | (
            {"AFFECTSTREAM_REASONING__LORA": str(lora)} if lora else {}
        )

    new_env = reasoning(a.new_layout, a.new_lora)
    configs: dict[str, tuple[dict[str, str], list[str]]] = {
        "off": ({}, ["--no-reasoning"]),  # the fast path alone (no reasoning, so no transcript either)
        "old": (reasoning(a.old_layout, a.old_lora), []),
        "new": (new_env, []),
    }
    if a.attribute:  # which of the two slow-path loads (Whisper, the LLM) costs the fast path what
        configs["words"] = ({"AFFECTSTREAM_LITE__TRANSCRIPT": "true"}, ["--no-reasoning"])
        configs["llm"] = (new_env | {"AFFECTSTREAM_LITE__TRANSCRIPT": "false"}, [])
    if a.nice_baseline:
        no_idle = {"AFFECTSTREAM_REASONING__IDLE": "false", "AFFECTSTREAM_LITE__TRANSCRIPT_IDLE": "false"}
        configs["nice"] = (new_env | no_idle, [])
    got: dict[str, dict[str, list[float]]] = {k: {"reason": [], "fast": [], "invalid": []} for k in configs}
    load0 = os.getloadavg()[0]
    t0 = time.time()
    for _ in range(a.reps):
        for name, (env, args) in configs.items():
            r, f, inv = run_once(a.clip, env, args)
            got[name]["reason"] += r
            got[name]["fast"] += f
            got[name]["invalid"].append(inv)
    out: dict[str, object] = {
        "clip": a.clip.name,
        "reps": a.reps,
        "cpus": os.cpu_count(),
        "load_avg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.time() - t0, 1),
        "old": f"{a.old_layout} + {a.old_lora.name if a.old_lora else 'profile adapter'}",
        "new": f"{a.new_layout or 'pinned layout'} + {a.new_lora.name if a.new_lora else 'profile adapter'}",
    }
    for name, g in got.items():
        out[name + "_run"] = {
            "reasoning_n": len(g["reason"]),
            "reasoning_invalid": int(sum(g["invalid"])),
            "reasoning_p50_ms": pct(g["reason"], 50),
            "reasoning_p95_ms": pct(g["reason"], 95),
            "fast_path_n": len(g["fast"]),
            "fast_path_p50_ms": pct(g["fast"], 50),
            "fast_path_p95_ms": pct(g["fast"], 95),
        }
    old, new, off = out["old_run"], out["new_run"], out["off_run"]
    if old["reasoning_p95_ms"] and new["reasoning_p95_ms"]:  # type: ignore[index]
        out["ratio_reasoning_p95_new_over_old"] = round(new["reasoning_p95_ms"] / old["reasoning_p95_ms"], 2)  # type: ignore[index]
    for name in configs:  # every configuration's fast-path p95 against the fast path alone
        if name != "off":
            p95 = out[name + "_run"]["fast_path_p95_ms"]  # type: ignore[index]
            out[f"ratio_fast_p95_{name}_over_off"] = round(p95 / off["fast_path_p95_ms"], 2)  # type: ignore[index]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

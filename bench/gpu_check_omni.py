"""r1-omni on a GPU: full-size random-weight model, per-window latency, batched throughput, peak memory.

Called by bench/gpu_check.sh (which checks for CUDA first). Weights are random (the published checkpoint
is not available to CI), which does not change the cost of any matmul. One window = 8 frames at 224²
+ audio (faithful: 30 s padded → 500 tokens; fast: 2 s → 33 tokens) + the demo instruction, ~1k LLM
positions; decoding is forced to exactly `--decode` tokens (no early stop) so every run does equal work.
`--device cpu --config tiny` exercises the same code path without a GPU (used by the tests).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from affectstream.engine.omni.config import full_size, tiny
from affectstream.engine.omni.decode import greedy
from affectstream.engine.omni.loading import no_init, parse_dtype
from affectstream.engine.omni.model import OmniModel
from affectstream.engine.omni.prompt import DEFAULT_INSTRUCTION
from affectstream.engine.omni.tiny import randomize_

TEXT_TOKENS = 100  # ~ the rendered chat prompt around the placeholders (docs/r1omni.md §1.8)


def random_model(config: str, device: str, dtype: torch.dtype) -> OmniModel:
    cfg = full_size() if config == "full" else tiny()
    with no_init(dtype), torch.device(device):
        m = OmniModel(cfg, attn="sdpa")
    return randomize_(m)


def timed(fn: Callable[[], object], sync: Callable[[], None], reps: int) -> tuple[float, object]:
    fn()  # warm-up (kernels, cuBLAS handles, allocator)
    sync()
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def run(config: str, device: str, dtype_name: str, batches: list[int], decode: int, reps: int) -> list[dict]:
    dtype = parse_dtype(dtype_name)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    m = random_model(config, device, dtype)
    build_s = time.perf_counter() - t0
    cfg = m.cfg
    rows = []
    bert_ids = torch.randint(0, cfg.bert.vocab_size, (1, 40), device=device)
    with torch.inference_mode():
        for b in batches:
            px = torch.randn(
                b * cfg.num_frames, 3, cfg.vision.image_size, cfg.vision.image_size, device=device
            )
            mel30 = torch.randn(b, cfg.audio.num_mel_bins, cfg.audio_frames_30s, device=device)
            mel2 = torch.randn(b, cfg.audio.num_mel_bins, 200, device=device)
            t_vis, feats = timed(lambda px=px: m.encode_frames(px), sync, reps)
            feats = feats.reshape(b, cfg.num_frames, *feats.shape[1:])
            t_gate, probs = timed(lambda: m.gate(bert_ids, torch.ones_like(bert_ids)), sync, reps)
            probs = probs.expand(b, -1)
            t_proj, video = timed(lambda f=feats, p=probs: m.project_video(f, p), sync, reps)
            t_aud, audio = timed(lambda x=mel30: m.encode_audio(x), sync, reps)
            t_fast, _ = timed(lambda x=mel2: m.encode_audio(x), sync, reps)
            text = m.model.embed_tokens(
                torch.randint(0, min(1000, cfg.vocab_size), (b, TEXT_TOKENS), device=device)
            )
            embeds = torch.cat([text[:, :20], video, text[:, 20:24], audio, text[:, 24:]], 1)
            out = None
            dec = []
            for _ in range(reps):
                out = greedy(m.llm, m.model.embed_tokens, embeds, decode, stop_ids=set(), sync=sync)
                dec.append(out)
            prefill = statistics.median(d.prefill_ms for d in dec)
            decode_ms = statistics.median(d.decode_ms for d in dec)
            total = t_vis + t_proj + t_aud + prefill + decode_ms  # gate is per run, not per window
            rows.append(
                {
                    "dtype": dtype_name,
                    "batch": b,
                    "positions": embeds.shape[1],
                    "vision_ms": t_vis,
                    "gate_ms": t_gate,
                    "projector_ms": t_proj,
                    "audio30_ms": t_aud,
                    "audio2_ms": t_fast,
                    "prefill_ms": prefill,
                    "decode_ms": decode_ms,
                    "ms_per_token": decode_ms / max(out.steps - 1, 1),
                    "window_ms": total,
                    "windows_per_s": b / total * 1e3,
                    "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
                    "build_s": build_s,
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config", choices=("full", "tiny"), default="full")
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    if a.device.startswith("cuda"):
        print(
            f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | CUDA {torch.version.cuda}"
        )
    print(
        f"config {a.config}, instruction {len(DEFAULT_INSTRUCTION)} chars, {a.decode}-token forced decode, median of {a.reps}"
    )
    rows = []
    for dt in a.dtypes.split(","):
        rows += run(a.config, a.device, dt, [int(x) for x in a.batches.split(",")], a.decode, a.reps)
    cols = [
        "dtype",
        "batch",
        "positions",
        "vision_ms",
        "projector_ms",
        "gate_ms",
        "audio30_ms",
        "audio2_ms",
        "prefill_ms",
        "decode_ms",
        "ms_per_token",
        "window_ms",
        "windows_per_s",
        "peak_gib",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    print(
        "window_ms = vision(8 frames) + projector + audio(30 s, faithful) + prefill + decode; gate is once per run."
    )


if __name__ == "__main__":
    main()

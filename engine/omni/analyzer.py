"""The `r1-omni` analyzer: a Window → WindowResult (label from `<answer>`) + ReasoningResult.

Per window: SigLIP features of each frame (cached per (stream, frame index): overlapping windows share
most frames, so only new frames are encoded), the all_in_one_small projector over the 8 frames with the
BERT gate (computed once per instruction), the Whisper encoder on the window audio (faithful = padded
30 s → 500 tokens, fast = only the window's audio), splicing into the chat prompt, greedy decoding.
Modalities follow the window: frames and audio → video+audio prompt; no audio → video-only; no frames →
audio-only. Windows in one `analyze_batch` call are batched through the encoders and, when their prompts
have equal length, through the LLM.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affectstream.engine.analyzer import AnalyzerBase
from affectstream.engine.cache import LruCache
from affectstream.engine.labels import EMOTIONS, uniform_scores
from affectstream.engine.llm.parse import parse_generation
from affectstream.engine.omni.decode import greedy
from affectstream.engine.omni.loading import load_omni
from affectstream.engine.omni.model import OmniModel
from affectstream.engine.omni.preprocess import frame_to_pixels, sample_indices, whisper_features
from affectstream.engine.omni.prompt import DEFAULT_INSTRUCTION, render, tokenize
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.engine.types import ReasoningResult, Window, WindowResult

BLACK = ("__black__", -1)


def load_bert_tokenizer(folder: Path) -> Any:
    from transformers import BertTokenizer

    vocab = folder / "vocab.txt"
    if not vocab.exists():
        raise ModelFileError(
            f"BERT tokenizer vocab not found at {vocab}: pass bert_dir=<a bert-base-uncased folder> "
            "(the R1-Omni checkpoint does not ship it)"
        )
    return BertTokenizer(vocab_file=str(vocab), do_lower_case=True)


def _generation_config(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's generation_config.json (greedy decoding still honours its repetition_penalty and eos)."""
    import json

    f = ckpt / "generation_config.json"
    try:
        raw = json.loads(f.read_text()) if f.is_file() else {}
    except json.JSONDecodeError as e:
        raise ModelFileError(f"damaged {f}: {e}") from None
    return raw if isinstance(raw, dict) else {}


class OmniAnalyzer(AnalyzerBase):
    profile = "r1-omni"

    def __init__(
        self,
        model: OmniModel,
        tokenizer: Any,
        bert_tokenizer: Any,
        *,
        audio_mode: str = "fast",
        aspect: str = "pad",
        instruction: str = DEFAULT_INSTRUCTION,
        max_new_tokens: int = 256,
        labels: tuple[str, ...] = EMOTIONS,
        cache_frames: int = 256,
        model_name: str = "r1-omni",
        decoder: Any | None = None,
        encoders: Any | None = None,
        repetition_penalty: float = 1.0,
    ) -> None:
        if audio_mode not in ("fast", "faithful"):
            raise ValueError(f"audio_mode must be 'fast' or 'faithful', got {audio_mode!r}")
        if aspect not in ("pad", "squash"):
            raise ValueError(f"aspect must be 'pad' or 'squash', got {aspect!r}")
        self.model = model
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.bert_tokenizer = bert_tokenizer
        self.audio_mode = audio_mode
        self.aspect = aspect
        self.instruction = instruction
        self.max_new_tokens = max_new_tokens
        self.labels = labels
        self.model_name = model_name
        self.decoder = decoder if decoder is not None else model.llm
        # vision/projector/audio/gate: the torch model itself, or OnnxEncoders (same four calls)
        self.enc: Any = encoders if encoders is not None else model
        self.cache = LruCache(cache_frames)
        self._gate: dict[str, torch.Tensor] = {}
        self._prompts: dict[tuple[bool, bool], list[int]] = {}
        self._reasoning: OrderedDict[tuple[str, int], ReasoningResult] = OrderedDict()
        self._lock = threading.Lock()
        self.last_texts: list[str] = []
        self.last_tokens: list[list[int]] = []
        self.repetition_penalty = repetition_penalty
        stop = {self.cfg.eos_token_id}
        for tok in ("<|im_end|>", "<|endoftext|>"):
            tid = tokenizer.convert_tokens_to_ids(tok)
            if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
                stop.add(tid)
        self.stop_ids = stop

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        device: str = "cpu",
        dtype: str = "fp32",
        audio_mode: str = "fast",
        vision_dir: str | Path | None = None,
        audio_dir: str | Path | None = None,
        bert_dir: str | Path | None = None,
        onnx_dir: str | Path | None = None,
        runtime: str = "auto",
        llm_gguf: str | Path | None = None,
        **kwargs: Any,
    ) -> OmniAnalyzer:
        """Load model, Qwen tokenizer (from the checkpoint) and BERT vocab (bert_dir or ckpt/bert_tokenizer).

        With `onnx_dir` (files from export/omni_onnx.py) the encoders run through the Runtime chain
        (`runtime`: auto/tensorrt/onnxruntime/cuda/cpu); splicing and decoding stay in torch.
        With `llm_gguf` (export/omni_gguf.py, optionally llama-quantize'd) llama.cpp decodes from the
        spliced embeddings instead of torch."""
        from transformers import AutoTokenizer

        ckpt = Path(checkpoint).expanduser()
        model, _ = load_omni(ckpt, device, dtype, vision_dir, audio_dir, bert_dir)
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # it reads config.json and warns about the custom model_type
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
        except Exception as e:
            raise ModelFileError(f"cannot load the tokenizer files in {ckpt}: {e}") from None
        finally:
            hf_logging.set_verbosity(level)
        bert_tok = load_bert_tokenizer(Path(bert_dir).expanduser() if bert_dir else ckpt / "bert_tokenizer")
        kwargs.setdefault("model_name", ckpt.name)
        gen = _generation_config(ckpt)
        kwargs.setdefault("repetition_penalty", float(gen.get("repetition_penalty") or 1.0))
        if onnx_dir is not None:
            from affectstream.engine.omni.onnx_encoders import OnnxEncoders

            kwargs["encoders"] = OnnxEncoders(onnx_dir, prefer=runtime)
        if llm_gguf is not None:
            from affectstream.engine.omni.llama_embed import LlamaEmbedDecoder

            kwargs["decoder"] = LlamaEmbedDecoder(llm_gguf, n_ctx=kwargs.pop("n_ctx", 2048))
        return cls(model, tokenizer, bert_tok, audio_mode=audio_mode, **kwargs)

    # ---- cached pieces -------------------------------------------------------------------------
    def gate_probs(self, text: str | None = None) -> torch.Tensor:
        """(1, 3) BERT-gate weights for the instruction (the text BERT reads at inference)."""
        text = self.instruction if text is None else text
        if text not in self._gate:
            enc = self.bert_tokenizer(
                [text], padding=True, truncation=True, add_special_tokens=True, return_tensors="pt"
            )
            with torch.inference_mode():
                self._gate[text] = self.enc.gate(enc["input_ids"], enc["attention_mask"])
        return self._gate[text]

    def prompt_ids(self, video: bool, audio: bool) -> list[int]:
        key = (video, audio)
        if key not in self._prompts:
            text = render(self.instruction, video, audio, self.cfg.mm_use_x_start_end)
            self._prompts[key] = tokenize(text, self.tokenizer)
        return self._prompts[key]

    def _frame_features(self, windows: list[Window]) -> dict[tuple[str, int], torch.Tensor]:
        """Features for every frame the windows need; only cache misses go through SigLIP (one batch)."""
        need: dict[tuple[str, int], np.ndarray | None] = {}
        feats: dict[tuple[str, int], torch.Tensor] = {}
        for w in windows:
            for key, frame in self._window_frames(w):
                if key in feats or key in need:
                    continue
                hit = self.cache.get(key)
                if hit is not None:
                    feats[key] = hit
                else:
                    need[key] = frame
        if need:
            size = self.cfg.vision.image_size
            px = np.stack(
                [
                    frame_to_pixels(f, size, self.aspect)
                    if f is not None
                    else np.full((3, size, size), -1.0, np.float32)
                    for f in need.values()
                ]
            )
            with torch.inference_mode():
                out = self.enc.encode_frames(torch.from_numpy(px))
            for key, v in zip(need, out, strict=True):
                self.cache.put(key, v)
                feats[key] = v
        return feats

    def _window_frames(self, w: Window) -> list[tuple[tuple[str, int], np.ndarray | None]]:
        t = self.cfg.num_frames
        frames = w.frames
        if len(frames) > t:
            frames = [frames[i] for i in sample_indices(len(frames), t)]
        keyed: list[tuple[tuple[str, int], np.ndarray | None]] = [
            ((w.stream_id, f.index), f.image) for f in frames
        ]
        keyed += [(BLACK, None)] * (t - len(keyed))
        return keyed

    # ---- the analysis --------------------------------------------------------------------------
    def analyze(self, window: Window) -> WindowResult:
        return self.analyze_batch([window])[0]

    def analyze_batch(self, windows: list[Window]) -> list[WindowResult]:
        with self._lock:
            return self._analyze_batch(windows)

    def reasoning(self, window: Window) -> ReasoningResult:
        """The ReasoningResult of a window (from the same generation as its WindowResult)."""
        key = (window.stream_id, window.index)
        with self._lock:
            if key not in self._reasoning:
                self._analyze_batch([window])
            return self._reasoning.pop(key)

    def _analyze_batch(self, windows: list[Window]) -> list[WindowResult]:
        for w in windows:
            if not (w.has_video or w.has_audio):
                raise ValueError(f"window {w.stream_id}#{w.index} has neither frames nor audio")
        t0 = time.perf_counter()
        lat: dict[str, float] = {}
        video_tok: dict[int, torch.Tensor] = {}
        audio_tok: dict[int, torch.Tensor] = {}
        probs = None
        with torch.inference_mode():
            vids = [i for i, w in enumerate(windows) if w.has_video]
            if vids:
                feats = self._frame_features([windows[i] for i in vids])
                lat["vision"] = (time.perf_counter() - t0) * 1e3
                t1 = time.perf_counter()
                stack = torch.stack(
                    [torch.stack([feats[k] for k, _ in self._window_frames(windows[i])]) for i in vids]
                )
                probs = self.gate_probs()
                fused = self.enc.project_video(stack, probs.expand(len(vids), -1))
                video_tok = dict(zip(vids, fused, strict=True))
                lat["projector"] = (time.perf_counter() - t1) * 1e3
            auds = [i for i, w in enumerate(windows) if w.has_audio]
            if auds:
                t1 = time.perf_counter()
                mels = [
                    whisper_features(windows[i].audio, self.audio_mode, self.cfg.audio.num_mel_bins)
                    for i in auds
                ]
                for length in {m.shape[1] for m in mels}:  # batch windows whose audio has the same length
                    idx = [j for j, m in enumerate(mels) if m.shape[1] == length]
                    out = self.enc.encode_audio(torch.from_numpy(np.stack([mels[j] for j in idx])))
                    audio_tok.update({auds[j]: o for j, o in zip(idx, out, strict=True)})
                lat["audio"] = (time.perf_counter() - t1) * 1e3
            spliced = [
                self.model.splice(
                    self.prompt_ids(i in video_tok, i in audio_tok), video_tok.get(i), audio_tok.get(i)
                )
                for i in range(len(windows))
            ]
            texts, prefill, decode = self._generate([s.embeds for s in spliced])
        self.last_texts = texts  # raw generations of the last call (parity checks, debugging)
        lat["prefill"], lat["decode"] = prefill, decode
        lat["total"] = (time.perf_counter() - t0) * 1e3
        results = []
        for i, (w, text) in enumerate(zip(windows, texts, strict=True)):
            results.append(self._result(w, text, lat, probs, spliced[i].spans))
        return results

    def _generate(self, embeds: list[torch.Tensor]) -> tuple[list[str], float, float]:
        groups: dict[int, list[int]] = {}
        for i, e in enumerate(embeds):
            groups.setdefault(e.shape[0], []).append(i)
        texts = [""] * len(embeds)
        self.last_tokens = [[] for _ in embeds]
        prefill = decode = 0.0
        if hasattr(self.decoder, "greedy"):  # llama.cpp (llama_embed.LlamaEmbedDecoder): one prompt at a time
            for i, e in enumerate(embeds):
                out = self.decoder.greedy(
                    e.detach().float().cpu().numpy(),
                    self.max_new_tokens,
                    self.stop_ids,
                    self.repetition_penalty,
                )
                prefill += out.prefill_ms
                decode += out.decode_ms
                self.last_tokens[i] = out.tokens[0]
                texts[i] = self.tokenizer.decode(out.tokens[0], skip_special_tokens=True).strip()
            return texts, prefill, decode
        params = list(self.decoder.parameters())
        dec_dtype = params[0].dtype if params else None
        for idx in groups.values():
            batch = torch.stack([embeds[i] for i in idx])
            if dec_dtype is not None and dec_dtype.is_floating_point:
                batch = batch.to(dec_dtype)
            out = greedy(
                self.decoder,
                self._embed,
                batch,
                self.max_new_tokens,
                self.stop_ids,
                repetition_penalty=self.repetition_penalty,
            )
            prefill += out.prefill_ms
            decode += out.decode_ms
            for i, toks in zip(idx, out.tokens, strict=True):
                self.last_tokens[i] = toks
                texts[i] = self.tokenizer.decode(toks, skip_special_tokens=True).strip()
        return texts, prefill, decode

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.get_input_embeddings()(ids)

    def _result(
        self,
        w: Window,
        text: str,
        lat: dict[str, float],
        probs: torch.Tensor | None,
        spans: dict[str, tuple[int, int]],
    ) -> WindowResult:
        parsed = parse_generation(text, self.labels)
        if parsed.valid and parsed.answer is not None:
            scores = {k: float(k == parsed.answer) for k in self.labels}
            label, score = parsed.answer, 1.0
        else:  # the model gave no usable label: claim nothing (uniform), flagged in `omni.valid`
            scores = uniform_scores(self.labels)
            label, score = "neutral" if "neutral" in scores else self.labels[0], 1.0 / len(self.labels)
        omni: dict[str, Any] = {
            "valid": bool(parsed.valid),
            "audio_mode": self.audio_mode,
            "tokens": {k: n for k, (_, n) in spans.items()},
        }
        if probs is not None and "video" in spans:
            omni["gate"] = dict(
                zip(("video", "body", "face"), (round(float(p), 4) for p in probs[0]), strict=True)
            )
        reasoning = ReasoningResult(
            stream=w.stream_id,
            window=w.ref,
            think=parsed.think,
            answer=parsed.answer,
            valid=parsed.valid,
            model=self.model_name,
            latency_ms=lat["total"],
            profile=self.profile,
            fallback_label=None if parsed.valid else label,
        )
        self._reasoning[(w.stream_id, w.index)] = reasoning
        while len(self._reasoning) > 64:  # bounded: results nobody asked for are dropped oldest-first
            self._reasoning.popitem(last=False)
        return WindowResult(
            stream=w.stream_id,
            window=w.ref,
            label=label,
            score=score,
            scores=scores,
            modalities={k: 1.0 for k in spans},
            latency_ms=dict(lat),
            profile=self.profile,
            extra={"omni": omni},
        )

    def close(self) -> None:
        if self.enc is not self.model and hasattr(self.enc, "close"):
            self.enc.close()
        if hasattr(self.decoder, "greedy"):
            self.decoder.close()
        self._reasoning.clear()
        self.cache = LruCache(self.cache.capacity)

"""A tiny random R1-Omni checkpoint with the published key layout, for tests and CI.

Widths are small and layers few (config.tiny), but the token geometry is real: 224-px frames in 16-px
patches, 8 frames → 392 fused video tokens, 30 s of audio → 1500 positions → 500 audio tokens.
The folder also carries the known-unused tower tensors (SigLIP last layer/post-norm/head, Whisper
classifier) so strict loading is exercised exactly as with a real checkpoint.

Tokenizers: no Qwen2 tokenizer exists offline, so a byte-level BPE (the same algorithm family as Qwen2's)
is trained here on a few dozen sentences (the instruction, emotion words, tags) with Qwen's special
tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, and saved as tokenizer.json. The BERT gate needs a
WordPiece vocab; a small lowercase one is written to `bert_tokenizer/vocab.txt`. A real checkpoint ships
its own Qwen tokenizer files; its BERT vocab comes from a bert-base-uncased folder (`bert_dir`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from affectstream.engine.labels import EMOTIONS, MAFW_LABELS
from affectstream.engine.omni.config import OmniConfig, tiny
from affectstream.engine.omni.loading import known_unused_shapes, save_checkpoint
from affectstream.engine.omni.model import OmniModel
from affectstream.engine.omni.prompt import DEFAULT_INSTRUCTION

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    DEFAULT_INSTRUCTION,
    "You are a helpful assistant.",
    "<vi_start><vi_end>\n<au_start><au_end>\n",
    "<think>The person smiles broadly and the voice is bright, so the emotion is happy.</think>",
    "<think>The brows are lowered and the voice is loud and tense.</think>\n<answer>angry</answer>",
    "<think>The face is calm and the speech is steady.</think>\n<answer>neutral</answer>",
    "The eyes widen and the mouth opens; the tone rises suddenly.",
    "Tears and a low, slow voice suggest sadness.",
    "which emotion is expressed in the video and the audio?",
    *[f"<answer>{lab}</answer>" for lab in MAFW_LABELS],
]


def build_qwen_like_tokenizer(folder: Path, vocab_size: int = 400) -> int:
    """Train and save a small byte-level BPE tokenizer; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "bos_token": None,
                "model_max_length": 32768,
                "additional_special_tokens": SPECIALS[1:],
                "affectstream_note": "tiny byte-level BPE trained by affectstream.engine.omni.tiny; not Qwen's vocab",
            },
            indent=2,
        )
    )
    return tok.get_vocab_size()


def write_bert_vocab(folder: Path) -> None:
    words = {w for s in _CORPUS for w in s.lower().replace("<", " ").replace(">", " ").split()}
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *sorted(words)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")


def randomize_(model: OmniModel, seed: int = 0) -> OmniModel:
    """Fill every parameter in place: N(0, 0.02) for matrices/kernels, 1 for norm weights, 0 for biases.
    Used for random-weight benchmarks of non-tiny geometries built with `loading.no_init` (fast, no init)."""
    dev = model.device
    g = torch.Generator(device=dev).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02, generator=g)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
    model.tie()
    return model.eval()


def make_tiny_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """Write config.json, model.safetensors, tokenizer files and bert_tokenizer/ into `folder`."""
    folder = Path(folder)
    vocab = build_qwen_like_tokenizer(folder)
    write_bert_vocab(folder / "bert_tokenizer")
    n_bert = len((folder / "bert_tokenizer" / "vocab.txt").read_text().split())
    cfg: OmniConfig = tiny(vocab_size=vocab + 16, bos_token_id=0, eos_token_id=2)
    cfg.bert.vocab_size = max(n_bert, 8)
    torch.manual_seed(seed)
    model = OmniModel(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    extra = {k: torch.randn(s, generator=gen) * 0.02 for k, s in known_unused_shapes(cfg).items()}
    save_checkpoint(model, cfg, folder, extra)
    (folder / "generation_config.json").write_text(
        json.dumps({"eos_token_id": [cfg.eos_token_id], "do_sample": False, "labels": list(EMOTIONS)})
    )
    return folder

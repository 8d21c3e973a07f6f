"""OmniConfig: every size and switch of the R1-Omni / HumanOmni-0.5B model in one dataclass.

Why a dataclass and not the HF config objects: the published `config.json` only describes the Qwen2 LLM
and a few `mm_*` switches; the SigLIP, Whisper and BERT sizes come from separate folders in the original
code (hard-coded paths). Here the full-size defaults of docs/r1omni.md §1 are built in, a checkpoint's
`config.json` overrides what it carries, and the optional `affectstream_towers` key (written by our tiny
test checkpoints, absent from the real ones) overrides the tower sizes. `from_tower_folder` lets a user
point at external SigLIP/Whisper/BERT folders whose own config.json then wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# Placeholder ids and marker strings of the reference code (docs/r1omni.md §1.7).
VIDEO_TOKEN_INDEX = -201
AUDIO_TOKEN_INDEX = -202
MODAL_INDEX = {"<video>": VIDEO_TOKEN_INDEX, "<audio>": AUDIO_TOKEN_INDEX}
X_START_END = {"<video>": ("<vi_start>", "<vi_end>"), "<audio>": ("<au_start>", "<au_end>")}


@dataclass
class VisionTowerConfig:
    """google/siglip-base-patch16-224 (docs/r1omni.md §1.3)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    image_size: int = 224
    patch_size: int = 16
    layer_norm_eps: float = 1e-6
    num_channels: int = 3

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class AudioTowerConfig:
    """openai/whisper-large-v3 encoder (docs/r1omni.md §1.6)."""

    d_model: int = 1280
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    num_mel_bins: int = 128
    max_source_positions: int = 1500
    # WhisperForAudioClassification head, stored in the checkpoint but never used (known-unused keys).
    classifier_proj_size: int = 256
    num_labels: int = 2


@dataclass
class BertConfigLite:
    """bert-base-uncased (docs/r1omni.md §1.5)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30522
    max_position_embeddings: int = 512
    type_vocab_size: int = 2


@dataclass
class OmniConfig:
    """The whole model. Defaults = the published 0.5B checkpoints (docs/r1omni.md §1, §2.2)."""

    # Qwen2 LLM (§1.2)
    hidden_size: int = 896
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    intermediate_size: int = 4864
    vocab_size: int = 151936
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True
    bos_token_id: int = 151643
    eos_token_id: int = 151645
    # multimodal switches (§2.2)
    mm_hidden_size: int = 768
    audio_hidden_size: int = 1280
    mm_projector_type: str = "all_in_one_small"
    mm_audio_projector_type: str = "mlp2x_gelu"
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    num_frames: int = 8
    mm_use_x_start_end: bool = True
    image_aspect_ratio: str = "pad"
    # projector internals that the original hard-codes (§1.4, §1.5)
    regstage_depth: int = 2
    se_ratio: float = 0.25
    gate_hidden: int = 3584
    num_branches: int = 3
    audio_pool: int = 3
    vision: VisionTowerConfig = field(default_factory=VisionTowerConfig)
    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    bert: BertConfigLite = field(default_factory=BertConfigLite)

    # ---- derived geometry -------------------------------------------------------------------------
    @property
    def patches_per_side(self) -> int:
        return self.vision.image_size // self.vision.patch_size

    @property
    def video_tokens(self) -> int:
        """Fused visual tokens per clip: T x ceil(side/2)^2 (392 for the real model)."""
        half = -(-self.patches_per_side // 2)
        return self.num_frames * half * half

    @property
    def audio_frames_30s(self) -> int:
        """Mel frames of the padded 30 s input (3000)."""
        return self.audio.max_source_positions * 2

    @property
    def audio_tokens_30s(self) -> int:
        """Audio tokens in faithful mode (500)."""
        return self.audio.max_source_positions // self.audio_pool

    # ---- (de)serialisation -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OmniConfig:
        """Take the keys we know from a checkpoint config.json; unknown keys are bookkeeping, ignored."""
        cfg = cls()
        for f in fields(cls):
            if f.name in ("vision", "audio", "bert"):
                continue
            if f.name in raw and raw[f.name] is not None:
                value = raw[f.name]
                if f.name == "eos_token_id" and isinstance(value, list):
                    value = value[0]
                setattr(cfg, f.name, type(getattr(cfg, f.name))(value))
        towers = raw.get("affectstream_towers") or {}
        for name, klass in (
            ("vision", VisionTowerConfig),
            ("audio", AudioTowerConfig),
            ("bert", BertConfigLite),
        ):
            sub = towers.get(name) or {}
            known = {f.name for f in fields(klass)}
            setattr(cfg, name, klass(**{k: v for k, v in sub.items() if k in known}))
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, path: str | Path) -> OmniConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"checkpoint config not found: {path}") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"checkpoint config is not valid JSON: {path}: {e}") from e
        if not isinstance(raw, dict):
            raise ValueError(f"checkpoint config must be a JSON object: {path}")
        return cls.from_dict(raw)

    def apply_tower_folder(self, kind: str, folder: str | Path) -> None:
        """Adopt the sizes of an external SigLIP / Whisper / BERT folder (its own config.json)."""
        raw = json.loads((Path(folder) / "config.json").read_text())
        if kind == "vision":
            raw = raw.get("vision_config", raw)
            target: Any = self.vision
        elif kind == "audio":
            target = self.audio
        elif kind == "bert":
            target = self.bert
        else:
            raise ValueError(f"unknown tower kind {kind!r}")
        for f in fields(target):
            if f.name in raw and raw[f.name] is not None:
                setattr(target, f.name, type(getattr(target, f.name))(raw[f.name]))
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        """A config.json in the reference layout plus our `affectstream_towers` extension."""
        d = asdict(self)
        towers = {k: d.pop(k) for k in ("vision", "audio", "bert")}
        d.update(
            architectures=["HumanOmniQwen2ForCausalLM"],
            model_type="HumanOmni_qwen2",
            torch_dtype="bfloat16",
            affectstream_towers=towers,
        )
        return d

    def validate(self) -> None:
        """Refuse geometries the reference code cannot run, with the reason, before building anything."""
        if self.mm_projector_type != "all_in_one_small":
            raise ValueError(
                f"mm_projector_type {self.mm_projector_type!r} not supported (only all_in_one_small)"
            )
        if self.mm_audio_projector_type != "mlp2x_gelu":
            raise ValueError(f"mm_audio_projector_type {self.mm_audio_projector_type!r} not supported")
        if self.mm_hidden_size != self.vision.hidden_size:
            raise ValueError(
                f"mm_hidden_size {self.mm_hidden_size} != vision hidden {self.vision.hidden_size}"
            )
        if self.audio_hidden_size != self.audio.d_model:
            raise ValueError(
                f"audio_hidden_size {self.audio_hidden_size} != whisper d_model {self.audio.d_model}"
            )
        if self.vision.image_size % self.vision.patch_size:
            raise ValueError("vision image_size must be a multiple of patch_size")
        if not -self.vision.num_hidden_layers <= self.mm_vision_select_layer < 0:
            raise ValueError(f"mm_vision_select_layer {self.mm_vision_select_layer} out of range")


def full_size() -> OmniConfig:
    """The published R1-Omni-0.5B geometry."""
    return OmniConfig()


def tiny(vocab_size: int = 512, bos_token_id: int = 0, eos_token_id: int = 1) -> OmniConfig:
    """Small widths and few layers but REAL token geometry (224 px / patch 16 / 8 frames / 1500 audio
    positions), so 392 video and 500 audio tokens are spliced exactly as in the full model."""
    return OmniConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        mm_hidden_size=32,
        audio_hidden_size=32,
        gate_hidden=48,
        vision=VisionTowerConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2
        ),
        audio=AudioTowerConfig(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            classifier_proj_size=16,
        ),
        bert=BertConfigLite(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=128,
            max_position_embeddings=128,
        ),
    )

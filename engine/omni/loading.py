"""Load an R1-Omni / HumanOmni checkpoint folder strictly, with no hard-coded paths.

One folder: `config.json` + `model.safetensors` (or sharded `model.safetensors.index.json`). The towers
come from the checkpoint's own tensors by default (the original discards them and re-reads external
folders); external SigLIP / Whisper / BERT folders can override them. Every key is accounted for:
- expected: the parameters/buffers our OmniModel has (lm_head is tied, so not stored);
- known-unused: stored but never computed with — SigLIP's last layer, post_layernorm and MAP head
  (only hidden_states[-2] is used), Whisper's classification projector/classifier;
- anything else is "unexpected", anything expected but absent is "missing": both fail with a list.
Damaged files (truncated, bad header, wrong shape) fail with one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from affectstream.engine.omni.config import OmniConfig
from affectstream.engine.omni.model import OmniModel
from affectstream.engine.omni.vision import siglip_config, used_layers
from affectstream.engine.runtimes.base import ModelFileError
from safetensors import safe_open
from torch import nn

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
VISION_PREFIX = "model.vision_tower.vision_tower."
AUDIO_PREFIX = "model.audio_tower.audio_tower."
BERT_PREFIX = "model.bert_model."
# heads of the original HF folders that R1-Omni never had (BERT pre-training heads)
SKIP_EXTERNAL = ("cls.",)


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: use one of fp32, fp16, bf16") from None


@contextlib.contextmanager
def no_init(dtype: torch.dtype) -> Iterator[None]:
    """Build modules without random initialisation (the weights are loaded right after) in `dtype`."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights():
            yield
    finally:
        torch.set_default_dtype(old)


def known_unused_shapes(cfg: OmniConfig) -> dict[str, tuple[int, ...]]:
    """Checkpoint keys that the reference stores but never computes with, and their shapes."""
    from transformers.models.siglip.modeling_siglip import (
        SiglipEncoderLayer,
        SiglipMultiheadAttentionPoolingHead,
    )

    out: dict[str, tuple[int, ...]] = {}
    scfg = siglip_config(cfg)
    a = cfg.audio
    with torch.device("meta"):
        vm = VISION_PREFIX + "vision_model."
        for i in range(used_layers(cfg), cfg.vision.num_hidden_layers):
            for k, v in SiglipEncoderLayer(scfg).state_dict().items():
                out[f"{vm}encoder.layers.{i}.{k}"] = tuple(v.shape)
        for k in ("weight", "bias"):
            out[f"{vm}post_layernorm.{k}"] = (cfg.vision.hidden_size,)
        for k, v in SiglipMultiheadAttentionPoolingHead(scfg).state_dict().items():
            out[f"{vm}head.{k}"] = tuple(v.shape)
    for name, (cout, cin) in {
        "projector": (a.classifier_proj_size, a.d_model),
        "classifier": (a.num_labels, a.classifier_proj_size),
    }.items():
        out[f"{AUDIO_PREFIX}{name}.weight"] = (cout, cin)
        out[f"{AUDIO_PREFIX}{name}.bias"] = (cout,)
    return out


def expected_shapes(model: OmniModel) -> dict[str, tuple[int, ...]]:
    """Keys our model loads (persistent state minus the tied lm_head)."""
    sd = model.state_dict()
    if model.cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return {k: tuple(v.shape) for k, v in sd.items()}


def checkpoint_table(cfg: OmniConfig) -> dict[str, tuple[int, ...]]:
    """The full stored key → shape table of a checkpoint of this config (expected + known-unused)."""
    with torch.device("meta"):
        model = OmniModel(cfg)
    return {**expected_shapes(model), **known_unused_shapes(cfg)}


@dataclass
class LoadReport:
    loaded: int = 0
    known_unused: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # prefix → file it came from


class TensorSource:
    """Lazy key → tensor access over one or more safetensors files, with a rename prefix."""

    def __init__(self) -> None:
        self._where: dict[str, tuple[object, str]] = {}
        self._handles: list[object] = []

    def add_file(self, path: Path, rename: dict[str, str] | None = None, only: str | None = None) -> int:
        try:
            handle = safe_open(str(path), framework="pt")
            keys = list(handle.keys())
        except FileNotFoundError:
            raise ModelFileError(f"checkpoint file missing: {path}") from None
        except Exception as e:  # safetensors raises its own error type for truncated/garbled files
            raise ModelFileError(f"damaged checkpoint file {path}: {e} (re-download it)") from None
        self._handles.append(handle)
        n = 0
        for key in keys:
            if key.startswith(SKIP_EXTERNAL):
                continue
            new = key
            for src, dst in (rename or {}).items():
                if key.startswith(src):
                    new = dst + key[len(src) :]
                    break
            else:
                if rename:
                    continue
            if only is None or new.startswith(only):
                self._where[new] = (handle, key)
                n += 1
        return n

    def drop_prefix(self, prefix: str) -> None:
        for k in [k for k in self._where if k.startswith(prefix)]:
            del self._where[k]

    def keys(self) -> set[str]:
        return set(self._where)

    def shape(self, key: str) -> tuple[int, ...]:
        handle, name = self._where[key]
        return tuple(handle.get_slice(name).get_shape())  # type: ignore[attr-defined]

    def get(self, key: str) -> torch.Tensor:
        handle, name = self._where[key]
        try:
            return handle.get_tensor(name)  # type: ignore[attr-defined]
        except Exception as e:
            raise ModelFileError(f"damaged checkpoint tensor {key}: {e}") from None


def checkpoint_files(ckpt: Path) -> list[Path]:
    index = ckpt / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ModelFileError(f"damaged shard index {index}: {e}") from None
        return [ckpt / f for f in sorted(set(weight_map.values()))]
    single = ckpt / "model.safetensors"
    if not single.exists():
        raise ModelFileError(f"no model.safetensors in checkpoint folder {ckpt}")
    return [single]


def _external(source: TensorSource, kind: str, folder: Path, report: LoadReport) -> None:
    """Replace one tower's tensors by an original HF folder's (SigLIP, Whisper or BERT)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelFileError(f"no *.safetensors in {kind} folder {folder}")
    prefix, rename = {
        "vision": (VISION_PREFIX, {"vision_model.": VISION_PREFIX + "vision_model."}),
        "audio": (
            AUDIO_PREFIX,
            {"model.encoder.": AUDIO_PREFIX + "encoder.", "encoder.": AUDIO_PREFIX + "encoder."},
        ),
        "bert": (BERT_PREFIX, {"bert.": BERT_PREFIX, "": BERT_PREFIX}),
    }[kind]
    source.drop_prefix(prefix)
    n = sum(source.add_file(f, rename, only=prefix) for f in files)
    if n == 0:
        raise ModelFileError(f"{kind} folder {folder} holds no tensors with the expected names")
    report.sources[prefix] = str(folder)


def _summarise(keys: set[str], limit: int = 5) -> str:
    items = sorted(keys)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def load_omni(
    checkpoint: str | Path,
    device: str = "cpu",
    dtype: str | torch.dtype = "fp32",
    vision_dir: str | Path | None = None,
    audio_dir: str | Path | None = None,
    bert_dir: str | Path | None = None,
    attn: str = "sdpa",
) -> tuple[OmniModel, LoadReport]:
    """Build the model for `checkpoint` and load every tensor, strictly. Returns the model in eval mode."""
    ckpt = Path(checkpoint).expanduser()
    if not ckpt.is_dir():
        raise ModelFileError(f"checkpoint folder not found: {ckpt}")
    try:
        cfg = OmniConfig.from_json(ckpt / "config.json")
        for kind, folder in (("vision", vision_dir), ("audio", audio_dir), ("bert", bert_dir)):
            if folder is not None:
                cfg.apply_tower_folder(kind, folder)
    except (FileNotFoundError, ValueError) as e:
        raise ModelFileError(str(e)) from None
    torch_dtype = parse_dtype(dtype)
    report = LoadReport()
    source = TensorSource()
    for f in checkpoint_files(ckpt):
        source.add_file(f)
        report.sources.setdefault("model.", str(f))
    for kind, folder in (("vision", vision_dir), ("audio", audio_dir), ("bert", bert_dir)):
        if folder is not None:
            _external(source, kind, Path(folder).expanduser(), report)

    with no_init(torch_dtype), torch.device(device):
        model = OmniModel(cfg, attn=attn)
    expected = expected_shapes(model)
    unused = known_unused_shapes(cfg)
    if cfg.tie_word_embeddings:  # some exporters store the tied head anyway; it equals embed_tokens
        unused["lm_head.weight"] = (cfg.vocab_size, cfg.hidden_size)
    present = source.keys()
    missing = set(expected) - present
    unexpected = present - set(expected) - set(unused)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_summarise(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_summarise(unexpected)}")
        raise ModelFileError(f"checkpoint {ckpt} does not match the R1-Omni layout: " + "; ".join(parts))
    wrong = {k for k in expected if source.shape(k) != expected[k]}
    wrong |= {k for k in present & set(unused) if source.shape(k) != unused[k]}
    if wrong:
        k = sorted(wrong)[0]
        raise ModelFileError(
            f"checkpoint {ckpt}: {len(wrong)} tensor(s) with the wrong shape, e.g. {k} is "
            f"{list(source.shape(k))}, expected {list(expected.get(k) or unused[k])}"
        )
    state = dict(model.state_dict())
    with torch.no_grad():
        for key in expected:
            state[key].copy_(source.get(key))
    report.loaded = len(expected)
    report.known_unused = sorted(present & set(unused))
    model.tie()
    model.eval()
    return model, report


def save_checkpoint(
    model: nn.Module, cfg: OmniConfig, folder: str | Path, extra: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write config.json + model.safetensors in the published layout (used for tiny test checkpoints)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    sd.update(extra or {})
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    return folder

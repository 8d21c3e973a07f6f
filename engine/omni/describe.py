"""`affectstream models describe r1-omni`: the full-size model's parameter counts, built on `meta`.

Nothing is allocated: the modules are instantiated on the meta device, so this runs in about a second
anywhere. Counts are grouped as in docs/r1omni.md §6.1 and include the checkpoint's known-unused tensors
(SigLIP's last layer, post-norm and MAP head; Whisper's classification projector and classifier), so
the stored total is the number of values in a published model.safetensors: 1,373,177,925.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from affectstream.engine.omni.config import OmniConfig, full_size
from affectstream.engine.omni.loading import AUDIO_PREFIX, VISION_PREFIX, known_unused_shapes
from affectstream.engine.omni.model import OmniModel

EXPECTED_TOTAL = 1_373_177_925


@dataclass
class ComponentCount:
    name: str
    used: int  # parameters our model instantiates and computes with
    unused: int  # stored in the checkpoint, never computed with

    @property
    def stored(self) -> int:
        return self.used + self.unused


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def component_counts(cfg: OmniConfig | None = None) -> list[ComponentCount]:
    cfg = cfg or full_size()
    with torch.device("meta"):
        m = OmniModel(cfg)
    inner = m.model
    unused = known_unused_shapes(cfg)
    vis_unused = sum(math.prod(s) for k, s in unused.items() if k.startswith(VISION_PREFIX))
    aud_unused = sum(math.prod(s) for k, s in unused.items() if k.startswith(AUDIO_PREFIX))
    llm = _count(inner.embed_tokens) + _count(inner.layers) + _count(inner.norm)
    if not cfg.tie_word_embeddings:
        llm += _count(m.lm_head)
    proj = inner.mm_projector
    rows = [
        ComponentCount("Qwen2 LLM (tied)", llm, 0),
        ComponentCount("SigLIP vision model", _count(inner.vision_tower), vis_unused),
        ComponentCount("Whisper encoder (+ unused classifier head)", _count(inner.audio_tower), aud_unused),
        ComponentCount("BERT", _count(inner.bert_model), 0),
        ComponentCount("bert_gate", _count(inner.bert_gate), 0),
        ComponentCount("mm_projector (all_in_one_small)", _count(proj), 0),
    ]
    for part in ("s1_video", "sampler_video", "s2_video", "readout_video", "mlp_2xgelu_face"):
        rows.append(ComponentCount(f"  mm_projector.{part}", _count(getattr(proj, part)), 0))
    rows.append(ComponentCount("audio_projector", _count(inner.audio_projector), 0))
    return rows


def total_stored(rows: list[ComponentCount]) -> int:
    return sum(r.stored for r in rows if not r.name.startswith("  "))


def describe_text(cfg: OmniConfig | None = None) -> str:
    """The table printed by `affectstream models describe r1-omni`."""
    rows = component_counts(cfg)
    lines = [f"{'component':46} {'used':>15} {'unused':>13} {'stored':>15}"]
    for r in rows:
        lines.append(f"{r.name:46} {r.used:>15,} {r.unused:>13,} {r.stored:>15,}")
    total = total_stored(rows)
    used = sum(r.used for r in rows if not r.name.startswith("  "))
    lines.append(f"{'total':46} {used:>15,} {total - used:>13,} {total:>15,}")
    if cfg is None or cfg == full_size():
        ok = "matches" if total == EXPECTED_TOTAL else "DOES NOT match"
        lines.append(
            f"stored total {ok} the published checkpoint ({EXPECTED_TOTAL:,} params, {EXPECTED_TOTAL * 2:,} bytes bf16)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe_text())

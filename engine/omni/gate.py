"""BERT instruction gate (docs/r1omni.md §1.5): instruction text → softmax weights for (video, body, face).

BERT reads the instruction, its [CLS] hidden state (position 0 of last_hidden_state, not the pooler)
goes through Linear(768, 3584) → GELU → Linear(3584, 3) and a softmax. The instruction is constant for
a run, so the analyzer computes the gate once and reuses it (a cache keyed by the text).
Keys: `bert_model.*` (HF BertModel, with pooler) and `bert_gate.0/.2` under `model`.
"""

from __future__ import annotations

import torch
from affectstream.engine.omni.config import OmniConfig
from torch import nn
from transformers import BertConfig, BertModel


def bert_config(cfg: OmniConfig, attn: str = "sdpa") -> BertConfig:
    b = cfg.bert
    return BertConfig(
        hidden_size=b.hidden_size,
        num_hidden_layers=b.num_hidden_layers,
        num_attention_heads=b.num_attention_heads,
        intermediate_size=b.intermediate_size,
        vocab_size=b.vocab_size,
        max_position_embeddings=b.max_position_embeddings,
        type_vocab_size=b.type_vocab_size,
        attn_implementation=attn,
    )


def build_bert(cfg: OmniConfig, attn: str = "sdpa") -> BertModel:
    return BertModel(bert_config(cfg, attn), add_pooling_layer=True)


def build_gate(cfg: OmniConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cfg.bert.hidden_size, cfg.gate_hidden),
        nn.GELU(),
        nn.Linear(cfg.gate_hidden, cfg.num_branches),
    )


def gate_probs(
    bert: BertModel, gate: nn.Sequential, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """(B, L) BERT token ids → (B, 3) branch probabilities."""
    out = bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids))
    cls = out.last_hidden_state[:, 0]
    return torch.softmax(gate(cls), dim=1)

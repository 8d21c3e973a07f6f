"""affectstream.train: RLVR for the reasoners — rewards, GRPO, cold-start SFT, data, evaluation, export.

The names a user of the library needs, importable from here (loaded on first use; the trainers need
the `train` extra):

    from affectstream.train import GRPOTrainer, GRPOConfig, SFTTrainer, SFTConfig, accuracy_reward, metrics
"""

from __future__ import annotations

from affectstream.engine.lazy import lazy_exports

_LAZY = {
    "GRPOTrainer": "affectstream.train.grpo",
    "GRPOConfig": "affectstream.train.grpo",
    "SFTTrainer": "affectstream.train.sft",
    "SFTConfig": "affectstream.train.sft",
    "accuracy_reward": "affectstream.train.rewards",
    "format_reward": "affectstream.train.rewards",
    "metrics": "affectstream.train.evaluate",
    "load_label_list": "affectstream.train.data",
    "load_r1omni_json": "affectstream.train.data",
}
__all__, __getattr__ = lazy_exports(__name__, _LAZY)

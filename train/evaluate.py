"""Evaluation: WAR, UAR, per-class recall, confusion matrix, format rate (docs/r1omni.md §5.3).

WAR (weighted average recall) = Σ_c (n_c/N)·recall_c = accuracy; UAR = unweighted mean recall over
the classes present in y_true — R1-Omni's definitions (sklearn `recall_score(average=None,
labels=unique(y_true))`). Predictions outside the label set (no answer, a non-label word) count as
errors, as there. The prediction is the first `<answer>` (R1-Omni's accuracy-reward extraction),
exact string, so the numbers agree with the accuracy reward the model was trained on.

Generation backends: batched greedy transformers (any checkpoint, before export) and llama.cpp
(the GGUF + adapter that production runs), both without a grammar unless asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.train.rewards import extract_answer, format_reward

INVALID = "(invalid)"


@dataclass
class Report:
    """Metrics over one set of predictions (percentages, as R1-Omni reports them)."""

    n: int
    war: float
    uar: float
    recall: dict[str, float]
    confusion: list[list[int]]  # rows: true labels (`labels`), cols: `labels` + INVALID
    labels: list[str]
    format_rate: float | None = None
    subsets: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "war": self.war,
            "uar": self.uar,
            "recall": self.recall,
            "confusion": self.confusion,
            "labels": self.labels,
            "format_rate": self.format_rate,
            "subsets": self.subsets,
        }


def prediction(completion: str, labels: Sequence[str] = EMOTIONS) -> str:
    """The label a completion gives, or INVALID (no/unknown answer): exact match, as the reward."""
    a = extract_answer(completion) if "<answer>" in completion else ""
    return a if a in labels else INVALID


def metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = EMOTIONS) -> Report:
    """WAR/UAR/recall/confusion; predictions not in `labels` are errors."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no samples to evaluate")
    bad = sorted({t for t in y_true if t not in labels})
    if bad:
        raise ValueError(f"true labels {bad} are not in the label set {list(labels)}")
    labs = list(labels)
    idx = {k: i for i, k in enumerate(labs)}
    cm = np.zeros((len(labs), len(labs) + 1), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[idx[t], idx.get(p, len(labs))] += 1
    present = [k for k in labs if cm[idx[k]].sum() > 0]
    recall = {k: 100.0 * cm[idx[k], idx[k]] / cm[idx[k]].sum() for k in present}
    war = 100.0 * sum(cm[i, i] for i in range(len(labs))) / len(y_true)
    uar = float(np.mean(list(recall.values())))
    return Report(len(y_true), war, uar, recall, cm.tolist(), labs)


def evaluate_completions(
    samples: Sequence[Any], completions: Sequence[str], labels: Sequence[str] = EMOTIONS
) -> Report:
    """Metrics for cue samples (need `.label`, `.kind`, `.fast_label`) and their completions.

    Adds the format rate and subsets: `voice_decides` and per kind, each with the model's accuracy
    and the fast-path fusion rule's accuracy on the same samples.
    """
    y_true = [s.label for s in samples]
    y_pred = [prediction(c, labels) for c in completions]
    rep = metrics(y_true, y_pred, labels)
    rep.format_rate = 100.0 * float(np.mean([format_reward(c) for c in completions]))
    kinds = sorted({s.kind for s in samples})
    groups = {"all": list(range(len(samples)))}
    for k in kinds:
        groups[k] = [i for i, s in enumerate(samples) if s.kind == k]
    for name, ids in groups.items():
        if not ids:
            continue
        rep.subsets[name] = {
            "n": len(ids),
            "accuracy": 100.0 * np.mean([y_pred[i] == y_true[i] for i in ids]),
            "fusion_accuracy": 100.0 * np.mean([samples[i].fast_label == y_true[i] for i in ids]),
            "format_rate": 100.0 * np.mean([format_reward(completions[i]) for i in ids]),
        }
    return rep


def generate_hf(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy, batched (left-padded) transformers generation of templated prompts."""
    import torch

    tokenizer.padding_side = "left"
    out: list[str] = []
    model.eval()
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i : i + batch_size])
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new = gen[:, enc["input_ids"].shape[1] :]
        out += [tokenizer.decode(r, skip_special_tokens=True) for r in new]
        if progress:
            progress(len(out))
    return out


def generate_llama(lm: Any, prompts: Sequence[str], max_tokens: int = 64, grammar: bool = False) -> list[str]:
    """Greedy llama.cpp generation (LlamaCppLM), one prompt at a time; no grammar by default."""
    return [lm.generate(p, max_tokens=max_tokens, grammar=grammar).text for p in prompts]


def format_table(rows: dict[str, Report]) -> str:
    """A markdown table: one row per model, the columns the README reports."""
    head = "| model | n | format % | WAR (acc) % | UAR % | voice/words-decide acc % | fusion rule on those % | fusion rule, all % |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        vd = r.subsets.get("voice_decides", {})
        al = r.subsets.get("all", {})
        lines.append(
            f"| {name} | {r.n} | {r.format_rate:.1f} | {r.war:.1f} | {r.uar:.1f} | "
            f"{vd.get('accuracy', float('nan')):.1f} | {vd.get('fusion_accuracy', float('nan')):.1f} | "
            f"{al.get('fusion_accuracy', float('nan')):.1f} |"
        )
    return "\n".join(lines)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t

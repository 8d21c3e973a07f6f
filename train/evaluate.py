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
    fast: dict[str, float] = field(default_factory=dict)  # the fast label's WAR/UAR on the same samples
    grounding: dict[str, float] = field(default_factory=dict)  # violation / strongest-named rates, %

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
            "fast": self.fast,
            "grounding": self.grounding,
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


def _think(completion: str) -> str | None:
    import re

    m = re.search(r"<think>(.*?)</think>", completion, re.DOTALL)
    return m.group(1) if m else None


def voice_or_words(sample: Any) -> bool:
    """Windows where the voice or the words carry the emotion: the synthetic `voice_decides` kind,
    and real speech-only windows (no face: only the voice and the words can decide there)."""
    if sample.kind == "voice_decides":
        return True
    return sample.kind == "real" and not sample.evidence.faces


def evaluate_completions(
    samples: Sequence[Any], completions: Sequence[str], labels: Sequence[str] = EMOTIONS
) -> Report:
    """Metrics for cue samples (need `.label`, `.kind`, `.fast_label`, `.evidence`) and their completions.

    Adds the format rate, the fast label's WAR/UAR on the same samples, grounding (share of thinks
    that claim a modality the window lacked; share that name the strongest modality, both over
    completions that have a think) and subsets — all, each kind, `voice_or_words`, each real
    dataset — each with n, the model's and the fast label's accuracy and UAR.
    """
    from affectstream.engine.llm import grounding

    y_true = [s.label for s in samples]
    y_pred = [prediction(c, labels) for c in completions]
    y_fast = [s.fast_label for s in samples]
    rep = metrics(y_true, y_pred, labels)
    rep.format_rate = 100.0 * float(np.mean([format_reward(c) for c in completions]))
    fast = metrics(y_true, y_fast, labels)
    rep.fast = {"war": fast.war, "uar": fast.uar}
    checks: list[Any] = []
    for s, c in zip(samples, completions, strict=True):
        t = _think(c)
        checks.append(None if t is None else grounding.check(t, s.evidence))
    kinds = sorted({s.kind for s in samples})
    groups = {"all": list(range(len(samples)))}
    for k in kinds:
        groups[k] = [i for i, s in enumerate(samples) if s.kind == k]
    groups["voice_or_words"] = [i for i, s in enumerate(samples) if voice_or_words(s)]
    for ds in sorted({str(s.meta.get("dataset")) for s in samples if s.kind == "real"}):
        groups[f"real/{ds}"] = [i for i, s in enumerate(samples) if s.kind == "real" and s.meta.get("dataset") == ds]
    for name, ids in groups.items():
        if not ids:
            continue
        yt = [y_true[i] for i in ids]
        m = metrics(yt, [y_pred[i] for i in ids], labels)
        f = metrics(yt, [y_fast[i] for i in ids], labels)
        with_think = [checks[i] for i in ids if checks[i] is not None]
        rep.subsets[name] = {
            "n": len(ids),
            "accuracy": m.war,
            "uar": m.uar,
            "fusion_accuracy": f.war,
            "fusion_uar": f.uar,
            "format_rate": 100.0 * np.mean([format_reward(completions[i]) for i in ids]),
            "agrees_fast": 100.0 * np.mean([y_pred[i] == y_fast[i] for i in ids]),
            "n_think": len(with_think),
            "grounding_violations": 100.0 * np.mean([bool(g.violations) for g in with_think]) if with_think else float("nan"),
            "names_strongest": 100.0 * np.mean([g.names_strongest for g in with_think]) if with_think else float("nan"),
        }
    al = rep.subsets["all"]
    rep.grounding = {k: al[k] for k in ("n_think", "grounding_violations", "names_strongest")}
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
    """A markdown table: one row per model, the columns the README reports (fast label beside)."""
    nan = float("nan")
    head = (
        "| model | n | format % | grounding violations % | names strongest % | WAR % (fast) | UAR % (fast) "
        "| voice/words n | voice/words WAR % (fast) | agrees with fast % |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        vw = r.subsets.get("voice_or_words", {})
        al = r.subsets.get("all", {})
        lines.append(
            f"| {name} | {r.n} | {r.format_rate:.1f} | {r.grounding.get('grounding_violations', nan):.1f} | "
            f"{r.grounding.get('names_strongest', nan):.1f} | {r.war:.1f} ({r.fast.get('war', nan):.1f}) | "
            f"{r.uar:.1f} ({r.fast.get('uar', nan):.1f}) | {int(vw.get('n', 0))} | "
            f"{vw.get('accuracy', nan):.1f} ({vw.get('fusion_accuracy', nan):.1f}) | {al.get('agrees_fast', nan):.1f} |"
        )
    return "\n".join(lines)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t

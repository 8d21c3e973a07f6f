"""Reports for speech-emotion training and media evaluation: JSON-ready metrics, a text table, a PNG.

Metrics are `train.evaluate.metrics` (WAR = accuracy, UAR = mean recall over the classes present),
the same definitions the RLVR evaluation uses, so every figure in the README means the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from affectstream.engine.labels import EMOTIONS
from affectstream.train.evaluate import metrics


def summary(
    y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str] | None = None
) -> dict[str, Any]:
    """Overall metrics plus one entry per group (dataset); percentages rounded to 0.1."""
    rep = metrics(list(y_true), list(y_pred), EMOTIONS).to_dict()
    out: dict[str, Any] = {
        "n": rep["n"],
        "war": round(rep["war"], 1),
        "uar": round(rep["uar"], 1),
        "recall": {k: round(v, 1) for k, v in rep["recall"].items()},
        "confusion": [row[: len(EMOTIONS)] for row in rep["confusion"]],
        "labels": list(EMOTIONS),
    }
    if groups is not None:
        per: dict[str, Any] = {}
        for g in sorted(set(groups)):
            sel = [i for i, x in enumerate(groups) if x == g]
            r = metrics([y_true[i] for i in sel], [y_pred[i] for i in sel], EMOTIONS)
            per[g] = {"n": r.n, "war": round(r.war, 1), "uar": round(r.uar, 1)}
        out["per_dataset"] = per
    return out


def table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per model/modality, overall and per-dataset UAR."""
    groups = sorted({g for r in rows.values() for g in r.get("per_dataset", {})})
    head = "| | n | WAR % | UAR % |" + "".join(f" {g} UAR % |" for g in groups)
    sep = "|---|---|---|---|" + "---|" * len(groups)
    lines = [head, sep]
    for name, r in rows.items():
        per = r.get("per_dataset", {})
        cells = "".join(f" {per[g]['uar']:.1f} |" if g in per else " – |" for g in groups)
        lines.append(f"| {name} | {r['n']} | {r['war']:.1f} | {r['uar']:.1f} |{cells}")
    return "\n".join(lines)


def confusion_png(confusions: dict[str, list[list[int]]], path: str | Path, title: str = "") -> Path | None:
    """Row-normalised confusion matrices side by side; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return None
    n = len(confusions)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), squeeze=False)
    for ax, (name, cm) in zip(axes[0], confusions.items(), strict=True):
        a = np.asarray(cm, float)
        norm = a / np.maximum(a.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                ax.text(
                    j,
                    i,
                    int(a[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(EMOTIONS)), EMOTIONS, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

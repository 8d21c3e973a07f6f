"""Dataset loaders: R1-Omni JSON and DFEW/MAFW/RAVDESS-style label lists (docs/r1omni.md §4.3, §5.1).

Why both: R1-Omni's GRPO data is a JSON list of `{"video", "conversations"}` whose only supervision
is the label in the gpt turn's `<answer>`; public emotion sets ship as (path, label) lists. Both load
into `LabeledItem`s with the label validated against one of the label sets, so a typo in a data file
is a one-line error naming the file and row, not a silent zero-reward sample.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from affectstream.engine.labels import DFEW_LABELS, EMOTIONS, MAFW_LABELS, RAVDESS_LABELS

LABEL_SETS: dict[str, tuple[str, ...]] = {
    "emotions": EMOTIONS,
    "dfew": DFEW_LABELS,
    "mafw": MAFW_LABELS,
    "ravdess": RAVDESS_LABELS,
}
# RAVDESS's own words mapped to the R1-Omni label space (eval_ravedess.py does the same).
RAVDESS_MAP = {"fearful": "fear", "surprised": "surprise"}
# R1-Omni's GRPO question and format instruction (docs/r1omni.md §4.3).
R1OMNI_QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the "
    "characters is the most obvious to you?"
)
R1OMNI_TEMPLATE = "{Question}\nOutput the thinking process in <think> </think> and final emotion in <answer> </answer> tags."
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


@dataclass(slots=True, frozen=True)
class LabeledItem:
    """One media file and its label; `solution` is R1-Omni's reward target form."""

    path: str
    label: str

    @property
    def solution(self) -> str:
        return f"<answer> {self.label} </answer>"


def label_set(name: str) -> tuple[str, ...]:
    try:
        return LABEL_SETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}") from None


def _check(label: str, labels: Sequence[str], where: str) -> str:
    lab = label.strip().lower()
    if labels is RAVDESS_LABELS or tuple(labels) == RAVDESS_LABELS:
        lab = RAVDESS_MAP.get(lab, lab)
    if lab not in labels:
        raise ValueError(f"{where}: label {label!r} is not in {list(labels)}")
    return lab


def load_r1omni_json(path: str | Path, labels: Sequence[str] = MAFW_LABELS) -> list[LabeledItem]:
    """R1-Omni JSON: `[{"video": ..., "conversations": [{"from": "human"...}, {"from": "gpt", "value": "...<answer>x</answer>"}]}]`.

    As in R1-Omni's `grpo.py`, only the video path and the gpt turn's answer are used.
    """
    p = Path(path)
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not JSON ({e})") from e
    if not isinstance(rows, list):
        raise ValueError(f"{p}: expected a JSON list of {{video, conversations}} objects")
    out = []
    for i, r in enumerate(rows):
        where = f"{p}[{i}]"
        if not isinstance(r, dict) or "video" not in r or "conversations" not in r:
            raise ValueError(f"{where}: missing 'video' or 'conversations'")
        gpt = [c for c in r["conversations"] if c.get("from") in ("gpt", "assistant")]
        if not gpt:
            raise ValueError(f"{where}: no gpt turn carrying the label")
        text = str(gpt[-1].get("value", ""))
        m = _ANSWER.search(text)
        out.append(LabeledItem(str(r["video"]), _check(m.group(1) if m else text, labels, where)))
    return out


def read_label_rows(path: str | Path, columns: Sequence[str] = ("path", "label")) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped cells) of a label list — the one parser for every `path,label[,...]` file.

    CSV, TSV or whitespace-separated; blank lines and `#` comments are skipped, and so is a first-line
    header whose second cell is `label`. A row with fewer cells than `columns` is a one-line error naming
    the file and line.
    """
    p = Path(path)
    with p.open(encoding="utf-8", newline="") as f:
        for ln, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "," in line or "\t" in line:
                cells = next(csv.reader([line], delimiter="\t" if "\t" in line else ","))
            else:
                cells = line.split()
            cells = [c.strip() for c in cells]
            if len(cells) < len(columns):
                raise ValueError(f"{p}:{ln}: expected '{','.join(columns)}', got {line!r}")
            if ln == 1 and cells[1].lower() == "label":
                continue
            yield ln, cells


def load_label_list(path: str | Path, labels: Sequence[str] = DFEW_LABELS) -> list[LabeledItem]:
    """`path,label` rows (see `read_label_rows`), each label checked against `labels`."""
    return [
        LabeledItem(cells[0], _check(cells[1], labels, f"{path}:{ln}")) for ln, cells in read_label_rows(path)
    ]


def to_r1omni_json(items: Sequence[LabeledItem], path: str | Path) -> Path:
    """Write items in R1-Omni's JSON form (question + label answer), e.g. to train the omni model."""
    rows = [
        {
            "video": it.path,
            "conversations": [
                {
                    "from": "human",
                    "value": "<video>\n<audio>\n" + R1OMNI_TEMPLATE.format(Question=R1OMNI_QUESTION),
                },
                {"from": "gpt", "value": f"<answer>{it.label}</answer>"},
            ],
        }
        for it in items
    ]
    p = Path(path)
    p.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return p

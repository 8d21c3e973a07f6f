"""Labelled clips for the voice head: a folder plus a CSV, grouped by speaker for disjoint splits.

Two CSV layouts are accepted, because the same command serves our corpus and a user's own clips:
- corpus layout: `file,label,dataset,speaker,...` (paths relative to the data folder);
- user layout: `path,label[,speaker]` (paths relative to the CSV's folder, or absolute).
Without a speaker column every clip is its own group: the split is then clip-wise, and the report says
so, because clip-wise scores of acted corpora are optimistic (the same voice is on both sides).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.labels import EMOTIONS

SAMPLE_RATE = 16_000


class DataError(ValueError):
    """Unusable training data; the message names the file/row and what is wrong."""


@dataclass(frozen=True, slots=True)
class Clip:
    path: Path
    label: str
    dataset: str  # corpus name ("user" for a path,label CSV)
    speaker: str  # unique within its dataset; "" when unknown
    licence: str = ""  # as stated in the CSV (`license_as_stated`), for the report

    @property
    def group(self) -> str:
        """Split unit: dataset+speaker (speaker ids repeat across corpora), else the clip itself."""
        return f"{self.dataset}/{self.speaker}" if self.speaker else f"clip:{self.path}"


def load_clips(data_dir: str | Path | None, labels_csv: str | Path | None = None) -> list[Clip]:
    """Read the label CSV (default DATA/labels.csv); every path must exist, every label be one of 7."""
    if labels_csv is None:
        if data_dir is None:
            raise DataError("give --data DIR (with labels.csv) or --labels CSV")
        labels_csv = Path(data_dir) / "labels.csv"
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise DataError(f"label file {labels_csv} not found")
    root = Path(data_dir) if data_dir is not None else labels_csv.parent
    with labels_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{labels_csv} has no rows")
    cols = set(rows[0])
    key = "file" if "file" in cols else "path" if "path" in cols else None
    if key is None or "label" not in cols:
        raise DataError(f"{labels_csv}: needs columns file|path and label (has {sorted(cols)})")
    clips = []
    for n, r in enumerate(rows, start=2):
        label = (r.get("label") or "").strip().lower()
        if label not in EMOTIONS:
            raise DataError(f"{labels_csv}:{n}: label {label!r} is not one of {', '.join(EMOTIONS)}")
        p = Path((r.get(key) or "").strip())
        if not p.is_absolute():
            p = root / p
        if not p.is_file():
            raise DataError(f"{labels_csv}:{n}: audio file {p} not found")
        clips.append(
            Clip(
                p,
                label,
                (r.get("dataset") or "user").strip(),
                (r.get("speaker") or "").strip(),
                (r.get("license_as_stated") or r.get("licence") or "").strip(),
            )
        )
    return clips


def speaker_folds(clips: list[Clip], k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index per clip, no group (speaker) in two folds, classes as balanced as groups allow."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    groups = [c.group for c in clips]
    n_groups = len(set(groups))
    if n_groups < k:
        raise DataError(f"{n_groups} speaker groups: need at least {k} for {k}-fold cross-validation")
    y = [c.label for c in clips]
    fold = np.full(len(clips), -1, int)
    if min(Counter(y).values()) >= k:
        splitter: Any = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:  # a class rarer than k clips cannot be stratified: plain group folds
        splitter = GroupKFold(n_splits=k)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        fold[test] = i
    return fold


def class_counts(clips: list[Clip]) -> dict[str, int]:
    c = Counter(x.label for x in clips)
    return {k: c.get(k, 0) for k in EMOTIONS}


def load_audio(path: str | Path) -> np.ndarray:
    """Mono float32 16 kHz; other rates are resampled (polyphase), stereo is averaged."""
    import soundfile as sf

    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError for unreadable files
        return _load_audio_av(path, e)
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sr), SAMPLE_RATE)
        x = resample_poly(x, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def _load_audio_av(path: str | Path, first_error: Exception) -> np.ndarray:
    """Fallback decoder (PyAV) for formats libsndfile does not read (mp3, m4a, video files)."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise DataError(f"{path}: no audio stream")
            rs = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            parts = []
            for fr in c.decode(audio=0):
                for o in rs.resample(fr):
                    parts.append(o.to_ndarray().reshape(-1))
            for o in rs.resample(None):
                parts.append(o.to_ndarray().reshape(-1))
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot decode audio ({first_error}; {e})") from e
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)

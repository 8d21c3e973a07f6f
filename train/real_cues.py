"""Real cue set: the `lite` analyzer run over real labelled speech, written as cue samples.

Why: a reasoner trained only on synthetic cues learned to describe a face on audio-only windows.
Real cues are what the engine really emits on real recordings — voice activity, prosody, the
speech-emotion model's scores when the profile ships one, and the Whisper transcript of the clip
(the words the stream said) — with the human label. Faces are absent here (speech corpora), so the
synthetic generator (cues.py) still supplies the face and emotional-word cases.

Input: `--data DIR`, a folder laid out like `<dataset>/<speaker>/*.flac` plus `labels.csv` with at
least the columns `file,label,dataset,speaker`. One window per clip: the clip's middle
`--window` seconds (the engine's window length), analysed exactly as `affectstream run` would.

Speaker-disjoint split: every (dataset, speaker) goes to one of `--folds` folds — the speech-emotion
head's own assignment (train/voice/data.py `speaker_folds`, so both issues hold out the same
speakers), else a hash of "dataset/speaker" (`speaker_fold`); `--folds-csv` (columns
dataset,speaker,fold) takes another. Fold `--test-fold` is the held-out test split, the rest train.

    python -m affectstream.train.real_cues --data DIR --out train/data/real [--per-class 3] [--transcript]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from affectstream.engine.hashing import sha256_bytes
from affectstream.engine.labels import EMOTIONS

SAMPLE_RATE = 16_000


def speaker_fold(dataset: str, speaker: str, folds: int = 5) -> int:
    """Deterministic fold of a speaker: sha256("dataset/speaker") mod `folds`."""
    h = sha256_bytes(f"{dataset}/{speaker}".encode())
    return int(h, 16) % folds


def voice_head_folds(data: Path, folds: int = 5) -> dict[tuple[str, str], int]:
    """The speech-emotion head's own speaker folds (train/voice/data.py, StratifiedGroupKFold over the
    whole labels.csv), so the reasoner's held-out speakers are the voice head's held-out fold; {} when
    that module is not available."""
    try:
        from affectstream.train.voice.data import load_clips, speaker_folds
    except ImportError:
        return {}
    clips = load_clips(data)
    fold = speaker_folds(clips, k=folds)
    return {(c.dataset, c.speaker): int(f) for c, f in zip(clips, fold, strict=True)}


def read_labels(data: Path) -> list[dict[str, str]]:
    """Rows of `labels.csv`; a missing column or an unknown label is one clear error."""
    p = data / "labels.csv"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found (--data must hold labels.csv and <dataset>/<speaker>/ files)")
    with p.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"file", "label", "dataset", "speaker"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{p}: needs columns {sorted(need)}, has {sorted(rows[0])}")
    for i, r in enumerate(rows, start=2):
        if r["label"] not in EMOTIONS:
            raise ValueError(f"{p}:{i}: label {r['label']!r} is not one of {EMOTIONS}")
    return rows


def select(rows: list[dict[str, str]], per_class: int) -> list[dict[str, str]]:
    """Up to `per_class` clips per (dataset, speaker, label), chosen by file-name hash (deterministic)."""
    if per_class <= 0:
        return rows
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["speaker"], r["label"])].append(r)
    out = []
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda r: sha256_bytes(r["file"].encode()))
        out += g[:per_class]
    return out


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz (soundfile; the corpus is already 16 kHz mono)."""
    import soundfile as sf

    a, sr = sf.read(str(path), dtype="float32", always_2d=True)
    a = a.mean(axis=1)
    if sr != SAMPLE_RATE:
        idx = np.linspace(0, len(a) - 1, int(len(a) * SAMPLE_RATE / sr)).astype(np.int64)
        a = a[idx]
    return a.astype(np.float32)


def middle(audio: np.ndarray, seconds: float) -> tuple[np.ndarray, float]:
    """The middle `seconds` of a clip (all of it when shorter) and its start time."""
    n = int(seconds * SAMPLE_RATE)
    if len(audio) <= n:
        return audio, 0.0
    s = (len(audio) - n) // 2
    return audio[s : s + n], s / SAMPLE_RATE


def build(
    data: Path,
    out: Path,
    per_class: int = 3,
    window: float = 2.0,
    transcript: bool = True,
    folds: int = 5,
    test_fold: int = 0,
    folds_csv: Path | None = None,
    limit: int | None = None,
    profile: str = "lite",
    transcript_splits: tuple[str, ...] = ("train", "test"),
    test_per_class: int | None = None,
    voice_head: Path | None = None,
    voice_heads: Path | None = None,
) -> dict[str, Any]:
    """Analyse the selected clips; write `train.jsonl`, `test.jsonl` and `summary.json` under `out`.

    `voice_heads`: a folder of per-fold heads (`voice_emotion_fold{f}.onnx`, from `affectstream train
    voice`); each clip is then scored by the head of its own speaker's fold — a head that never heard
    that speaker (cross-fitting). Without it, train-fold clips are scored by a head that heard their
    speakers, and the reasoner learns to copy near-perfect voice scores it will never see live."""
    from affectstream.engine.lite import LiteAnalyzer
    from affectstream.engine.llm.evidence import Evidence
    from affectstream.engine.types import Window
    from affectstream.train.cues import CueSample, save_jsonl

    out.mkdir(parents=True, exist_ok=True)
    assign: dict[tuple[str, str], int] = {}
    how = "sha256"
    if folds_csv is None:
        assign = voice_head_folds(data, folds)
        how = "voice-head StratifiedGroupKFold" if assign else how
    else:
        how = "csv"
        with folds_csv.open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                assign[(r["dataset"], r["speaker"])] = int(r["fold"])
    all_rows = read_labels(data)

    def _split(r: dict[str, str]) -> str:
        key = (r["dataset"], r["speaker"])
        return "test" if assign.get(key, speaker_fold(*key, folds=folds)) == test_fold else "train"

    tpc = per_class if test_per_class is None else test_per_class
    rows = select([r for r in all_rows if _split(r) == "train"], per_class)
    rows += select([r for r in all_rows if _split(r) == "test"], tpc)
    if limit:
        rows = rows[:limit]
    if voice_heads is not None:
        missing = [f for f in range(folds) if not (voice_heads / f"voice_emotion_fold{f}.onnx").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{voice_heads}: no voice_emotion_fold{missing[0]}.onnx (run: affectstream train voice)"
            )
    analyzers: dict[Path | None, Any] = {}  # by voice head: one analyzer each, built when first needed

    def analyzer_for(fold: int) -> Any:
        head = voice_heads / f"voice_emotion_fold{fold}.onnx" if voice_heads is not None else voice_head
        if head not in analyzers:
            kw: dict[str, Any] = {} if head is None else {"voice_head": str(head)}
            analyzers[head] = LiteAnalyzer(profile, transcript=False, verify=False, **kw)
        return analyzers[head]

    prof = analyzer_for(test_fold).prof
    transcriber = None
    if transcript and prof.has("whisper"):
        from affectstream.engine.models.transcript import Transcriber

        transcriber = Transcriber(prof.path("whisper"), threads=1)
    # transcripts are the expensive part: kept in the output folder and reused by a re-run (e.g. once
    # the profile gains a voice model, only the analyzer has to run again)
    tcache_path = out / "transcripts.json"
    tcache: dict[str, str] = (
        json.loads(tcache_path.read_text(encoding="utf-8")) if tcache_path.is_file() else {}
    )
    splits: dict[str, list[CueSample]] = {"train": [], "test": []}
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        audio = load_audio(data / r["file"])
        seg, start = middle(audio, window)
        w = Window(f"real{i}", 0, start, start + len(seg) / SAMPLE_RATE, [], seg)
        key = (r["dataset"], r["speaker"])
        fold = assign.get(key, speaker_fold(*key, folds=folds))
        payload = analyzer_for(fold).analyze(w).to_payload()
        split = "test" if fold == test_fold else "train"
        if transcript and payload.get("voice") and split in transcript_splits:
            if r["file"] not in tcache and transcriber is not None:
                tcache[r["file"]] = transcriber.transcribe(audio).strip()
                if len(tcache) % 10 == 0:  # progress survives an interrupted run
                    tcache_path.write_text(json.dumps(tcache, ensure_ascii=False) + "\n", encoding="utf-8")
            payload["voice"]["transcript"] = tcache.get(r["file"]) or None
        ev = Evidence.from_payload(payload)
        splits[split].append(
            CueSample(
                id=f"{r['dataset']}/{Path(r['file']).stem}",
                label=r["label"],
                evidence=ev,
                kind="real",
                fast_label=str(payload.get("label") or ""),
                source="real",
                meta={"dataset": r["dataset"], "speaker": r["speaker"], "fold": fold, "split": split},
            )
        )
        if (i + 1) % 50 == 0:
            el = time.perf_counter() - t0
            print(f"{i + 1}/{len(rows)} clips, {el:.0f} s", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {"clips": len(rows), "seconds": round(time.perf_counter() - t0, 1)}
    tcache_path.write_text(json.dumps(tcache, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    for name, samples in splits.items():
        save_jsonl(samples, out / f"{name}.jsonl")
        by_ds: dict[str, int] = defaultdict(int)
        for s in samples:
            by_ds[s.meta["dataset"]] += 1
        summary[name] = {
            "n": len(samples),
            "speakers": sorted({f"{s.meta['dataset']}/{s.meta['speaker']}" for s in samples}),
            "per_dataset": dict(by_ds),
            "fast_label_acc": round(float(np.mean([s.fast_label == s.label for s in samples])), 4)
            if samples
            else None,
            "with_voice_scores": sum(bool(s.evidence.voice_scores) for s in samples),
            "with_transcript": sum(bool(s.evidence.transcript) for s in samples),
        }
    summary["folds"] = {"k": folds, "test_fold": test_fold, "assignment": how}
    summary["voice_scores"] = (
        "cross-fitted: each clip scored by the head of its own fold (never heard its speaker)"
        if voice_heads is not None
        else f"one head for every clip: {voice_head or 'the profile head'}"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m affectstream.train.real_cues", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--data", type=Path, required=True, help="folder with labels.csv and <dataset>/<speaker>/*.flac"
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="output folder (train.jsonl, test.jsonl, summary.json)"
    )
    ap.add_argument("--per-class", type=int, default=3, help="clips per speaker and label (0: all)")
    ap.add_argument(
        "--test-per-class", type=int, default=None, help="the same for the test split (default: --per-class)"
    )
    ap.add_argument("--window", type=float, default=2.0, help="window length in seconds (middle of the clip)")
    ap.add_argument("--no-transcript", action="store_true", help="skip the Whisper transcript")
    ap.add_argument(
        "--transcript-splits",
        default="train,test",
        help="splits that get transcripts (Whisper costs ~1-9 s per clip on a loaded 2-core CPU)",
    )
    ap.add_argument(
        "--voice-head",
        type=Path,
        default=None,
        help="speech-emotion head ONNX to use instead of the profile's (e.g. one that never heard the test fold)",
    )
    ap.add_argument(
        "--voice-heads",
        type=Path,
        default=None,
        help="folder of per-fold heads voice_emotion_fold{f}.onnx: score each clip with the head that never "
        "heard its speaker (cross-fitting; recommended for training cues)",
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--test-fold", type=int, default=0)
    ap.add_argument("--folds-csv", type=Path, default=None, help="dataset,speaker,fold assignment to use")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        s = build(
            a.data,
            a.out,
            a.per_class,
            a.window,
            not a.no_transcript,
            a.folds,
            a.test_fold,
            a.folds_csv,
            a.limit,
            transcript_splits=tuple(x.strip() for x in a.transcript_splits.split(",") if x.strip()),
            test_per_class=a.test_per_class,
            voice_head=a.voice_head,
            voice_heads=a.voice_heads,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in s.items() if k not in ("train", "test")} | {
        k: {kk: vv for kk, vv in s[k].items() if kk != "speakers"} for k in ("train", "test")}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

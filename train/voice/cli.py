"""`affectstream train voice --data DIR [--labels CSV]`: extract (cached), cross-validate, fit, export.

Writes into `--out` (default `./voice-head`): `voice_emotion.onnx` (the head, calibrated), `report.json`
(WAR/UAR overall and per dataset, per-class recall, confusion matrix, majority baseline, the reference
probe, calibration), `confusion.png`, `config.toml` (the configuration as run), and the fold-0 head
with its test list (`voice_emotion_fold0.onnx`, `fold0_test.csv`: speakers that head never heard, for
end-to-end checks with `affectstream eval media --voice-head`). To use a retrained
head: `affectstream run SOURCE --config FILE` with `[lite] voice_head = "voice-head/voice_emotion.onnx"`.
Bad input (missing files, unknown labels, too few speakers) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
from affectstream.engine.hashing import sha256_file
from affectstream.engine.labels import EMOTIONS
from affectstream.train.voice.data import DataError, class_counts, load_clips, speaker_folds

DEFAULT_CONFIG = "configs/voice.toml"


def _log(msg: str) -> None:
    print(f"[train voice] {msg}", file=sys.stderr, flush=True)


def load_config(path: str | Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        text = files("affectstream.train").joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")
    else:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"config file {p} not found")
        text = p.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"config {path or DEFAULT_CONFIG}: {e}") from e


def run(
    data: str | Path | None,
    labels: str | Path | None = None,
    *,
    config: str | Path | None = None,
    out: str | Path = "voice-head",
    cache: str | Path | None = None,
    profile: str | Path = "lite",
    folds: int | None = None,
    epochs: int | None = None,
    cv: bool = True,
) -> dict[str, Any]:
    """The whole pipeline; returns the report (also written to OUT/report.json)."""
    from affectstream.engine.models.voice_emotion import HeadInfo, WhisperEncoder
    from affectstream.engine.profile import Profile
    from affectstream.train.voice.features import SEG_S, FeatureStore
    from affectstream.train.voice.head import HeadConfig, export_onnx
    from affectstream.train.voice.report import confusion_png, summary, table
    from affectstream.train.voice.train import (
        OptimConfig,
        cross_validate,
        ece,
        fit,
        pool_windows,
        probe_cv,
        sample_weights,
        segment_set,
        softmax,
        training_rows,
    )

    t0 = time.monotonic()
    cfg, cfg_text = load_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clips = load_clips(data, labels)
    k = int(folds or cfg.get("cv", {}).get("folds", 5))
    seed = int(cfg.get("cv", {}).get("seed", 0))
    fcfg = cfg.get("features", {})
    head_cfg = HeadConfig(**cfg.get("head", {}))
    ocfg = dict(cfg.get("optim", {}))
    if epochs is not None:
        ocfg["epochs"] = int(epochs)
    opt = OptimConfig(**ocfg)
    primary = str(fcfg.get("primary", "orig"))
    variants = tuple(dict.fromkeys([primary, *fcfg.get("variants", [])]))
    context_s = float(primary[5:]) if primary.startswith("first") else SEG_S
    compute_type = str(fcfg.get("compute_type", "int8"))
    chunk_s = float(fcfg.get("chunk_s", 0.0))
    stride_s = float(fcfg.get("stride_s", 0.0))
    _log(f"{len(clips)} clips, {len({c.group for c in clips})} speaker groups, variants {list(variants)}")

    prof = Profile.load(profile)
    encoder = WhisperEncoder(prof.path("whisper"), threads=opt.threads, compute_type=compute_type)
    store = FeatureStore(
        encoder,
        cache,
        context_s=float(fcfg.get("context_s", 0.0)),
        encoder_id=f"whisper-base-{compute_type}",
        chunk_s=chunk_s,
        stride_s=stride_s,
    )
    feats = store.extract_all(clips, variants, progress=_log)
    _log(f"features ready ({store.hits} cached, {store.misses} extracted)")

    y = [c.label for c in clips]
    ds = [c.dataset for c in clips]
    report: dict[str, Any] = {
        "data": {
            "clips": len(clips),
            "speaker_groups": len({c.group for c in clips}),
            "class_counts": class_counts(clips),
            "datasets": {
                d: {
                    "clips": sum(1 for c in clips if c.dataset == d),
                    "speakers": len({c.group for c in clips if c.dataset == d}),
                    "licence": sorted({c.licence for c in clips if c.dataset == d and c.licence}),
                }
                for d in sorted(set(ds))
            },
            "speaker_disjoint": all(c.speaker for c in clips),
        },
        "protocol": {
            "folds": k,
            "seed": seed,
            "input": f"{primary}: "
            + (
                f"the first {context_s:g} s of each clip"
                if primary.startswith("first")
                else "the 2 s window with the most speech energy"
            )
            + (
                f", encoded in {chunk_s:g} s pieces ({stride_s or chunk_s:g} s apart), each alone (as at run time)"
                if chunk_s > 0
                else ", encoded alone (as at run time)"
            ),
            "extra_training_variants": [v for v in variants if v != primary],
            "split": "speaker-disjoint (dataset+speaker), StratifiedGroupKFold"
            if all(c.speaker for c in clips)
            else "clip-wise (no speaker column): optimistic",
        },
        "config": {
            "head": head_cfg.to_dict(),
            "optim": opt.to_dict(),
            "features": fcfg,
            "variants": list(variants),
        },
    }
    temperature = 1.0
    cv_uar = None
    if cv:
        fold = speaker_folds(clips, k, seed)
        res = cross_validate(clips, feats, fold, head_cfg, opt, progress=_log, primary=primary)
        temperature = res.temperature
        pred = [EMOTIONS[i] for i in res.clip_p.argmax(1)]
        rows = {"voice head": summary(y, pred, ds), "majority class": summary(y, res.majority, ds)}
        if cfg.get("probe", {}).get("enabled", False):
            pp = probe_cv(clips, feats[primary], fold, seed)
            rows["probe: LR on mean+std"] = summary(y, [EMOTIONS[i] for i in pp], ds)
        p1 = softmax(res.seg_logits)
        pt = softmax(res.seg_logits / temperature)
        report["cv"] = {
            **rows["voice head"],
            "rows": rows,
            "table": table(rows),
            "temperature": round(temperature, 4),
            "window_ece_percent": {
                "uncalibrated": round(ece(p1, res.seg_y), 2),
                "calibrated": round(ece(pt, res.seg_y), 2),
            },
            "seconds": round(res.seconds, 1),
            "folds": {str(f): sorted({clips[i].group for i in np.nonzero(fold == f)[0]}) for f in range(k)},
        }
        cv_uar = rows["voice head"]["uar"]
        # the fold-0 head and its test list: end-to-end checks (`eval media`, composites) on speakers
        # the head never heard; never shipped
        hold = HeadInfo(
            temperature=temperature,
            context_s=context_s,
            compute_type=compute_type,
            chunk_s=chunk_s,
            stride_s=stride_s,
            cv_uar=cv_uar,
            extra={"holdout_fold": 0},
        )
        # every fold's head (fold f never heard fold f's speakers): cross-fitted cues for the reasoner
        # (`train.real_cues --voice-heads OUT`), so its training windows carry the voice head's real
        # out-of-speaker errors instead of the near-perfect scores of a head that heard them
        for f, model in enumerate(res.fold_models):
            info = dataclasses.replace(hold, extra={"holdout_fold": f})
            export_onnx(model, head_cfg, out / f"voice_emotion_fold{f}.onnx", temperature, info.to_metadata())
        with (out / "fold0_test.csv").open("w", encoding="utf-8") as fh:
            fh.write("path,label,dataset,speaker\n")
            for i in np.nonzero(fold == 0)[0]:
                c = clips[i]
                fh.write(f"{c.path.resolve()},{c.label},{c.dataset},{c.speaker}\n")
        report["cv"]["holdout"] = {"fold": 0, "head": "voice_emotion_fold0.onnx", "labels": "fold0_test.csv"}
        _log("cross-validation (speaker-disjoint):\n" + report["cv"]["table"])
        png = confusion_png(
            {n: r["confusion"] for n, r in rows.items() if n != "majority class"},
            out / "confusion.png",
            f"{k}-fold speaker-disjoint CV, {len(clips)} clips",
        )
        report["cv"]["png"] = png.name if png is not None else None

    _log("fitting the final head on all clips")
    pools = {
        v: pool_windows(segment_set(clips, feats[v]), head_cfg, opt.crops if v == primary else 0, opt.seed)
        for v in variants
    }
    rows_v, rows_y, rows_c = training_rows(pools, np.ones(len(clips), bool))
    model = fit(rows_v, rows_y, sample_weights(rows_c, rows_y), head_cfg, opt, progress=_log)
    info = HeadInfo(
        temperature=temperature,
        context_s=context_s,
        compute_type=compute_type,
        chunk_s=chunk_s,
        stride_s=stride_s,
        cv_uar=cv_uar,
        extra={"trained_on": sorted(set(ds)), "clips": len(clips)},
    )
    onnx_path = out / "voice_emotion.onnx"
    export_onnx(model, head_cfg, onnx_path, temperature, info.to_metadata())
    report["head"] = {
        "file": onnx_path.name,
        "bytes": onnx_path.stat().st_size,
        "sha256": sha256_file(onnx_path),
    }
    report["seconds"] = round(time.monotonic() - t0, 1)
    (out / "config.toml").write_text(cfg_text, encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    _log(f"wrote {onnx_path} ({report['head']['bytes']} bytes), report.json in {report['seconds']} s")
    return report


def main(args: Any) -> int:
    """Entry point for `engine/cli.py` (argparse namespace with data, labels, config, out, ...)."""
    from affectstream.engine.runtimes.base import ModelFileError, RuntimeUnavailable

    try:
        run(
            getattr(args, "data", None),
            getattr(args, "labels", None),
            config=getattr(args, "config", None),
            out=getattr(args, "out", None) or "voice-head",
            cache=getattr(args, "cache", None),
            profile=getattr(args, "profile", None) or "lite",
            folds=getattr(args, "folds", None),
            epochs=getattr(args, "epochs", None),
            cv=not getattr(args, "no_cv", False),
        )
    except (DataError, ModelFileError, RuntimeUnavailable) as e:
        print(f"affectstream: {e}", file=sys.stderr)
        return 2
    return 0

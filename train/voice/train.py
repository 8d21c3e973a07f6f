"""Speaker-disjoint cross-validation, temperature calibration and the final fit of the voice head.

Protocol (why each step):
- every clip is represented by the 2 s window with the most speech energy, encoded on its own as the
  runtime encodes a window (`features.speech_span`); the code keeps a list of windows per clip (a
  clip's prediction is the mean of its windows' probabilities) so longer recordings can add more;
- folds never share a speaker (dataset+speaker): acted corpora repeat the same sentences per speaker,
  and a voice seen in training inflates accuracy a lot;
- the loss is class-balanced (inverse class frequency) and clip-balanced (a clip's segments share one
  clip's weight), so the big classes (and clips with several windows) do not dominate;
- augmented copies (speed, noise, gain) are added to the training side only;
- the temperature is fitted on the out-of-fold segment logits (held-out speakers), which is what the
  shipped head's probabilities are calibrated on; the final head is then fitted on all clips.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from affectstream.engine.labels import EMOTIONS
from affectstream.train.voice.data import Clip
from affectstream.train.voice.features import ClipFeatures
from affectstream.train.voice.head import HeadConfig, build_mlp

log = logging.getLogger("affectstream.train.voice")
IDX = {k: i for i, k in enumerate(EMOTIONS)}


@dataclass(slots=True)
class OptimConfig:
    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    threads: int = 2
    seed: int = 0
    # feature-space augmentation: this many extra copies of each training window, each pooled over a
    # random contiguous 50-100 % of its frames (a run-time window that catches part of a phrase)
    crops: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SegmentSet:
    """All segments of a set of clips as padded arrays."""

    x: np.ndarray  # (n, T, D) float16
    mask: np.ndarray  # (n, T) float32
    clip: np.ndarray  # (n,) index into the clip list
    y: np.ndarray  # (n,) class index

    def __len__(self) -> int:
        return len(self.y)


def segment_set(clips: list[Clip], feats: list[ClipFeatures], which: np.ndarray | None = None) -> SegmentSet:
    idx = np.arange(len(clips)) if which is None else np.asarray(which)
    segs = [(i, s) for i in idx for s in feats[i].segs]
    t = max(len(s) for _, s in segs)
    d = segs[0][1].shape[1]
    x = np.zeros((len(segs), t, d), np.float16)
    m = np.zeros((len(segs), t), np.float32)
    for j, (_, s) in enumerate(segs):
        x[j, : len(s)] = s
        m[j, : len(s)] = 1.0
    ci = np.array([i for i, _ in segs], int)
    y = np.array([IDX[clips[i].label] for i in ci], int)
    return SegmentSet(x, m, ci, y)


def concat_sets(sets: list[SegmentSet]) -> SegmentSet:
    t = max(s.x.shape[1] for s in sets)

    def pad(a: np.ndarray) -> np.ndarray:
        w = [(0, 0), (0, t - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
        return np.pad(a, w)

    return SegmentSet(
        np.concatenate([pad(s.x) for s in sets]),
        np.concatenate([pad(s.mask) for s in sets]),
        np.concatenate([s.clip for s in sets]),
        np.concatenate([s.y for s in sets]),
    )


def sample_weights(clip: np.ndarray, y: np.ndarray, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    """Class-balanced and clip-balanced weights (a clip's windows share one clip's weight), mean 1."""
    _, inv, cnt = np.unique(clip, return_inverse=True, return_counts=True)
    clip_w = 1.0 / cnt[inv].astype(np.float64)
    cls_mass = np.bincount(y, weights=clip_w, minlength=n_classes)
    present = max(1, int((cls_mass > 0).sum()))
    cls_w = np.where(cls_mass > 0, cls_mass.sum() / np.maximum(cls_mass, 1e-9) / present, 0.0)
    w = clip_w * cls_w[y]
    return (w / w.mean()).astype(np.float32)


@dataclass(slots=True)
class Pooled:
    """Pooled vectors of every window: the original and `crops` time-cropped copies (augmentation)."""

    v: np.ndarray  # (n_windows, P)
    crops: list[np.ndarray]  # each (n_windows, P)
    clip: np.ndarray
    y: np.ndarray


def pool_windows(s: SegmentSet, head_cfg: HeadConfig, crops: int, seed: int) -> Pooled:
    from affectstream.train.voice.head import pooled

    rng = np.random.default_rng(seed)
    v = pooled(s.x, s.mask, head_cfg.stats)
    cv = [pooled(s.x, _crop_masks(s.mask, 1.0, rng), head_cfg.stats) for _ in range(crops)]
    return Pooled(v, cv, s.clip, s.y)


def fit(
    v: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    head_cfg: HeadConfig,
    opt: OptimConfig,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Fit the MLP on pooled vectors `v` (n, P) with labels `y` and sample weights `w`."""
    import torch

    torch.manual_seed(opt.seed)
    torch.set_num_threads(max(1, opt.threads))
    rng = np.random.default_rng(opt.seed)
    mu = v.mean(0)
    sd = v.std(0)
    model = build_mlp(head_cfg, mu, sd)
    vt, yt, wt = torch.as_tensor(v), torch.as_tensor(y), torch.as_tensor(w)
    optim = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    steps = opt.epochs * int(np.ceil(len(v) / opt.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optim, max_lr=opt.lr, total_steps=max(steps, 1), pct_start=0.1
    )
    lossf = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=opt.label_smoothing)
    model.train()
    for ep in range(opt.epochs):
        order = torch.as_tensor(rng.permutation(len(v)))
        tot = 0.0
        for a in range(0, len(order), opt.batch):
            b = order[a : a + opt.batch]
            loss = (lossf(model(vt[b]), yt[b]) * wt[b]).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            sched.step()
            tot += float(loss.detach()) * len(b)
        if progress is not None and (ep + 1) % 50 == 0:
            progress(f"  epoch {ep + 1}/{opt.epochs} loss {tot / len(v):.4f}")
    model.eval()
    return model


def _crop_masks(mask: np.ndarray, prob: float, rng: np.random.Generator) -> np.ndarray:
    """With probability `prob` a window keeps only a random contiguous 50-100 % of its frames (as a
    run-time window that catches part of a phrase)."""
    if prob <= 0:
        return mask
    out = mask.copy()
    for i in np.nonzero(rng.random(len(mask)) < prob)[0]:
        n = int(mask[i].sum())
        keep = int(rng.integers(max(1, n // 2), n + 1))
        a = int(rng.integers(0, n - keep + 1))
        out[i] = 0.0
        out[i, a : a + keep] = 1.0
    return out


def predict_logits(model: Any, v: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(v)).numpy().astype(np.float64)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising held-out NLL (1-D search on a log grid, then refined)."""

    def nll(t: float) -> float:
        p = softmax(logits / t)
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    grid = np.exp(np.linspace(np.log(0.2), np.log(10), 81))
    best = min(grid, key=nll)
    fine = best * np.exp(np.linspace(-0.05, 0.05, 21))
    return float(min(fine, key=nll))


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top class (percent)."""
    conf = p.max(1)
    right = p.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            e += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    return 100.0 * e


def clip_probs(seg_p: np.ndarray, seg_clip: np.ndarray, n_clips: int) -> np.ndarray:
    out = np.zeros((n_clips, seg_p.shape[1]))
    np.add.at(out, seg_clip, seg_p)
    cnt = np.bincount(seg_clip, minlength=n_clips)[:, None]
    return out / np.maximum(cnt, 1)


@dataclass(slots=True)
class CvResult:
    fold: np.ndarray
    seg_logits: np.ndarray  # out-of-fold logits of the original segments
    seg_clip: np.ndarray
    seg_y: np.ndarray
    temperature: float
    clip_p: np.ndarray  # (n_clips, 7) calibrated, mean over segments
    majority: list[str]  # per clip: the most frequent class of its training folds
    seconds: float
    holdout_model: Any = None  # the fold-0 model: never saw fold 0's speakers (for end-to-end checks)
    fold_models: list[Any] = field(default_factory=list)  # model f never saw fold f's speakers
    extra: dict[str, Any] = field(default_factory=dict)


def cross_validate(
    clips: list[Clip],
    feats: dict[str, list[ClipFeatures]],
    fold: np.ndarray,
    head_cfg: HeadConfig,
    opt: OptimConfig,
    progress: Callable[[str], None] | None = None,
    primary: str = "orig",
) -> CvResult:
    """`primary` is the feature variant a clip is judged on (the run-time input); the other variants
    only add training rows."""
    t0 = time.monotonic()
    k = int(fold.max()) + 1
    # pool every window of every variant once; folds only select rows
    pools = {
        v: pool_windows(segment_set(clips, feats[v]), head_cfg, opt.crops if v == primary else 0, opt.seed)
        for v in feats
    }
    orig = pools[primary]
    seg_logits: list[np.ndarray] = []
    seg_clip: list[np.ndarray] = []
    seg_y: list[np.ndarray] = []
    majority = [""] * len(clips)
    holdout = None
    models: list[Any] = []
    for f in range(k):
        v, y, c = training_rows(pools, fold != f)
        te = fold[orig.clip] == f
        if progress is not None:
            progress(f"fold {f + 1}/{k}: {len(v)} training rows, {int(te.sum())} test windows")
        model = fit(v, y, sample_weights(c, y), head_cfg, opt, progress)
        if f == 0:
            holdout = model
        models.append(model)
        seg_logits.append(predict_logits(model, orig.v[te]))
        seg_clip.append(orig.clip[te])
        seg_y.append(orig.y[te])
        counts = np.bincount([IDX[clips[i].label] for i in np.nonzero(fold != f)[0]], minlength=len(EMOTIONS))
        for i in np.nonzero(fold == f)[0]:
            majority[i] = EMOTIONS[int(np.argmax(counts))]
    lg, sc, sy = np.concatenate(seg_logits), np.concatenate(seg_clip), np.concatenate(seg_y)
    t = fit_temperature(lg, sy)
    cp = clip_probs(softmax(lg / t), sc, len(clips))
    return CvResult(
        fold, lg, sc, sy, t, cp, majority, time.monotonic() - t0, holdout_model=holdout, fold_models=models
    )


def training_rows(
    pools: dict[str, Pooled], clip_sel: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled rows (all variants and crops) of the selected clips: vectors, labels, clip ids."""
    vs, ys, cs = [], [], []
    for p in pools.values():
        rows = clip_sel[p.clip]
        for arr in (p.v, *p.crops):
            vs.append(arr[rows])
            ys.append(p.y[rows])
            cs.append(p.clip[rows])
    return np.concatenate(vs), np.concatenate(ys), np.concatenate(cs)


def probe_cv(clips: list[Clip], feats: list[ClipFeatures], fold: np.ndarray, seed: int = 0) -> np.ndarray:
    """The reference probe: logistic regression on mean+std-pooled states of each 2 s segment
    (standardised, not class-balanced), clip = mean of its segments' probabilities, same folds.
    Returns the predicted class per clip."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows = [(i, s.astype(np.float32)) for i, f in enumerate(feats) for s in f.segs]
    x = np.stack([np.concatenate([s.mean(0), s.std(0)]) for _, s in rows])
    sc = np.array([i for i, _ in rows])
    y = np.array([IDX[clips[i].label] for i in sc])
    p = np.zeros((len(rows), len(EMOTIONS)))
    for f in range(int(fold.max()) + 1):
        tr, te = fold[sc] != f, fold[sc] == f
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
        clf.fit(x[tr], y[tr])
        p[np.ix_(te, clf.classes_)] = clf.predict_proba(x[te])
    return clip_probs(p, sc, len(clips)).argmax(1)

"""Does an accelerated build still give the same answers? Compare it with ONNX Runtime on CPU.

FP16 and especially INT8 engines trade accuracy for speed, and a bad calibration or an unlucky layer
fusion can move class scores enough to flip labels. After every engine build we run the same REAL
window batches through the candidate runtime and through ONNX Runtime's CPU provider (the reference the
ONNX export itself was verified against) and report, per output:

- `max_abs_diff` / `mean_abs_diff`, and `max_rel_diff` = max |Δ| / max |reference| (outputs live on
  very different scales: probabilities in [0, 1], box offsets in pixels);
- `argmax_agreement`: for `(N, C)` class outputs the share of samples whose label agrees; for
  `(N, A, 1)` detector scores the share whose best anchor is, *by the reference's own scores*, as good
  as the reference's best within `anchor_tol` (neighbouring anchors on one face score alike, and
  weighted NMS merges them — a different but equally scored anchor is the same detection).

Component transforms (`OUTPUT_TRANSFORMS`) compare detector logits as sigmoid scores, the quantity the
detector thresholds. Thresholds are per precision (`DEFAULT_LIMITS`); `AccuracyReport.passed` applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from affectstream.engine.runtimes.base import Runtime

# (max relative diff, min argmax agreement). FP32 engines should be near-exact; FP16 keeps ~3 decimal
# digits; INT8 is judged on agreement only. Measured numbers are always reported alongside.
DEFAULT_LIMITS: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 0.999),
    "fp16": (1e-2, 0.98),
    "int8": (float("inf"), 0.90),
}
ANCHOR_TOL = 0.02


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


Transform = Callable[[np.ndarray], np.ndarray]
OUTPUT_TRANSFORMS: dict[str, dict[str, Transform]] = {
    "face_short": {"classificators": sigmoid},
    "face_full": {"classificators": sigmoid},
    "face_mesh": {"face_flag": sigmoid},
}
# Where an output matters: BlazeFace box regressors only on anchors the reference detects a face at
# (score ≥ 0.5); offsets of background anchors are never decoded, so their drift is irrelevant.
Mask = Callable[[Mapping[str, np.ndarray]], np.ndarray]
OUTPUT_MASKS: dict[str, dict[str, Mask]] = {
    c: {"regressors": lambda ref: sigmoid(np.asarray(ref["classificators"], np.float64)) >= 0.5}
    for c in ("face_short", "face_full")
}


@dataclass(slots=True)
class OutputStats:
    name: str
    max_abs_diff: float = 0.0
    max_abs_ref: float = 0.0
    sum_abs_diff: float = 0.0
    n_values: int = 0
    agree: int = 0
    n_argmax: int = 0

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.n_values if self.n_values else 0.0

    @property
    def max_rel_diff(self) -> float:
        return self.max_abs_diff / self.max_abs_ref if self.max_abs_ref > 0 else self.max_abs_diff

    @property
    def argmax_agreement(self) -> float | None:
        return self.agree / self.n_argmax if self.n_argmax else None

    def to_dict(self) -> dict[str, object]:
        return {
            "output": self.name,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "n_argmax": self.n_argmax,
        }


@dataclass(slots=True)
class AccuracyReport:
    precision: str
    n_samples: int = 0
    outputs: dict[str, OutputStats] = field(default_factory=dict)

    @property
    def max_abs_diff(self) -> float:
        return max((o.max_abs_diff for o in self.outputs.values()), default=0.0)

    @property
    def max_rel_diff(self) -> float:
        return max((o.max_rel_diff for o in self.outputs.values()), default=0.0)

    @property
    def min_agreement(self) -> float | None:
        vals = [o.argmax_agreement for o in self.outputs.values() if o.argmax_agreement is not None]
        return min(vals) if vals else None

    def passed(self, limits: tuple[float, float] | None = None) -> bool:
        max_rel, min_agree = limits or DEFAULT_LIMITS.get(self.precision, DEFAULT_LIMITS["fp32"])
        agree = self.min_agreement
        if agree is not None and agree < min_agree:
            return False
        return bool(self.max_rel_diff <= max_rel) and self.max_abs_diff != float("inf")

    def summary(self) -> str:
        agree = self.min_agreement
        a = f"{agree * 100:.1f}%" if agree is not None else "n/a"
        verdict = "PASS" if self.passed() else "FAIL"
        return (
            f"{verdict} {self.precision}: {self.n_samples} samples, max|Δ| {self.max_abs_diff:.3g} "
            f"(rel {self.max_rel_diff:.2g}), "
            f"argmax agreement {a}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "precision": self.precision,
            "n_samples": self.n_samples,
            "passed": self.passed(),
            "outputs": [o.to_dict() for o in self.outputs.values()],
        }


def argmax_axis(shape: tuple[int, ...]) -> int | None:
    """Which axis carries the decision: classes for (N, C), anchors for (N, A, 1); else none."""
    if len(shape) == 2 and shape[1] > 1:
        return 1
    if len(shape) == 3 and shape[2] == 1 and shape[1] > 1:
        return 1
    return None


def compare_outputs(
    report: AccuracyReport,
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    transforms: Mapping[str, Transform] | None = None,
    anchor_tol: float = ANCHOR_TOL,
    masks: Mapping[str, Mask] | None = None,
) -> None:
    """Fold one batch's outputs into `report` (outputs matched by name; shapes must agree)."""
    keep = {n: np.broadcast_to(m(ref), np.shape(ref[n])) for n, m in (masks or {}).items() if n in ref}
    for name, r in ref.items():
        if name not in got:
            raise ValueError(f"candidate runtime has no output {name!r} (has {sorted(got)})")
        g = np.asarray(got[name], dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            raise ValueError(f"output {name!r}: shape {g.shape} != reference {r.shape}")
        if transforms and name in transforms:
            r, g = transforms[name](r), transforms[name](g)
        st = report.outputs.setdefault(name, OutputStats(name))
        d = np.abs(g - r)
        if name in keep:  # compare only where the output is used
            d, r_used = d[keep[name]], r[keep[name]]
        else:
            r_used = r
        if d.size:
            m = float(np.max(d))  # NaN propagates: a NaN from the engine is a failure, never "small"
            st.max_abs_diff = float("inf") if np.isnan(m) else max(st.max_abs_diff, m)
            st.max_abs_ref = max(st.max_abs_ref, float(np.nanmax(np.abs(r_used))))
        st.sum_abs_diff += float(np.nansum(d))
        st.n_values += d.size
        ax = argmax_axis(r.shape)
        if ax is None:
            continue
        if r.ndim == 3:  # detector anchors (N, A, 1): the candidate's pick must be as good by the reference
            r2, g2 = r[:, :, 0], g[:, :, 0]
            rows = np.arange(r2.shape[0])
            ok = r2[rows, np.argmax(g2, axis=1)] >= r2.max(axis=1) - anchor_tol
        else:
            ok = np.argmax(g, axis=ax) == np.argmax(r, axis=ax)
        st.agree += int(ok.sum())
        st.n_argmax += r.shape[0]


def compare_runtimes(
    reference: Runtime,
    candidate: Runtime,
    feeds: Iterable[dict[str, np.ndarray]],
    precision: str,
    *,
    component: str = "",
) -> AccuracyReport:
    """Run every feed through both runtimes and measure how far the candidate drifts."""
    report = AccuracyReport(precision)
    transforms = OUTPUT_TRANSFORMS.get(component)
    masks = OUTPUT_MASKS.get(component)
    for feed in feeds:
        ref = reference.run(feed)
        got = candidate.run(feed)
        compare_outputs(report, ref, got, transforms, masks=masks)
        report.n_samples += int(next(iter(feed.values())).shape[0])
    if report.n_samples == 0:
        raise ValueError("no samples compared: the feed iterator was empty")
    return report

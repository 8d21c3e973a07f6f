"""Does an accelerated build still give the same answers? Compare it with ONNX Runtime on CPU.

FP16 and especially INT8 engines trade accuracy for speed, and a bad calibration or an unlucky layer
fusion can move class scores enough to flip labels. After every engine build we run the same REAL
window batches through the candidate runtime and through ONNX Runtime's CPU provider (the reference the
ONNX export itself was verified against) and report, per output:

- `max_abs_diff` / `mean_abs_diff` of the raw values;
- `argmax_agreement`: the share of samples whose argmax agrees — over classes for `(N, C)` outputs (the
  label), over anchors for `(N, A, 1)` score outputs (the best face box) — the number that matters.

Thresholds are per precision (`DEFAULT_LIMITS`); `AccuracyReport.passed` applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from affectstream.engine.runtimes.base import Runtime

# (max abs diff, min argmax agreement). FP32 engines should be near-exact; FP16 keeps ~3 decimal
# digits; INT8 is judged mainly on agreement. Measured numbers are always reported alongside.
DEFAULT_LIMITS: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 0.999),
    "fp16": (2e-2, 0.98),
    "int8": (2.5e-1, 0.90),
}


@dataclass(slots=True)
class OutputStats:
    name: str
    max_abs_diff: float = 0.0
    sum_abs_diff: float = 0.0
    n_values: int = 0
    agree: int = 0
    n_argmax: int = 0

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_abs_diff / self.n_values if self.n_values else 0.0

    @property
    def argmax_agreement(self) -> float | None:
        return self.agree / self.n_argmax if self.n_argmax else None

    def to_dict(self) -> dict[str, object]:
        return {
            "output": self.name,
            "max_abs_diff": self.max_abs_diff,
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
    def min_agreement(self) -> float | None:
        vals = [o.argmax_agreement for o in self.outputs.values() if o.argmax_agreement is not None]
        return min(vals) if vals else None

    def passed(self, limits: tuple[float, float] | None = None) -> bool:
        max_diff, min_agree = limits or DEFAULT_LIMITS.get(self.precision, DEFAULT_LIMITS["fp32"])
        agree = self.min_agreement
        if agree is not None:
            # Labels are what users see: agreement decides; raw diff may exceed for INT8 logits.
            return agree >= min_agree and (self.precision == "int8" or self.max_abs_diff <= max_diff)
        return self.max_abs_diff <= max_diff

    def summary(self) -> str:
        agree = self.min_agreement
        a = f"{agree * 100:.1f}%" if agree is not None else "n/a"
        verdict = "PASS" if self.passed() else "FAIL"
        return (
            f"{verdict} {self.precision}: {self.n_samples} samples, max|Δ| {self.max_abs_diff:.3g}, "
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


def compare_outputs(report: AccuracyReport, ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
    """Fold one batch's outputs into `report` (outputs matched by name; shapes must agree)."""
    for name, r in ref.items():
        if name not in got:
            raise ValueError(f"candidate runtime has no output {name!r} (has {sorted(got)})")
        g = np.asarray(got[name], dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            raise ValueError(f"output {name!r}: shape {g.shape} != reference {r.shape}")
        st = report.outputs.setdefault(name, OutputStats(name))
        d = np.abs(g - r)
        if d.size:
            m = float(np.max(d))  # NaN propagates: a NaN from the engine is a failure, never "small"
            st.max_abs_diff = float("inf") if np.isnan(m) else max(st.max_abs_diff, m)
        st.sum_abs_diff += float(np.nansum(d))
        st.n_values += d.size
        ax = argmax_axis(r.shape)
        if ax is not None:
            st.agree += int((np.argmax(g, axis=ax) == np.argmax(r, axis=ax)).sum())
            st.n_argmax += r.shape[0]


def compare_runtimes(
    reference: Runtime, candidate: Runtime, feeds: Iterable[dict[str, np.ndarray]], precision: str
) -> AccuracyReport:
    """Run every feed through both runtimes and measure how far the candidate drifts."""
    report = AccuracyReport(precision)
    for feed in feeds:
        ref = reference.run(feed)
        got = candidate.run(feed)
        compare_outputs(report, ref, got)
        report.n_samples += int(next(iter(feed.values())).shape[0])
    if report.n_samples == 0:
        raise ValueError("no samples compared: the feed iterator was empty")
    return report

"""The timeline as a PNG, for people who paste it into documents and slides.

Same picture as the HTML page, one row per stream: stacked class scores over time with the window label
band underneath. matplotlib is the `metrics` extra and is imported here only, with the Agg backend, so a
headless server never needs a display.
"""

from __future__ import annotations

from pathlib import Path

from affectstream.streams.report.html import GENERATOR, color_of
from affectstream.streams.report.load import Results


def render_png(results: Results, path: str | Path, *, dpi: int = 110) -> Path:
    """Write the PNG; raises ImportError (naming matplotlib) when the extra is missing."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    streams = list(results.streams.values())
    fig, axes = plt.subplots(len(streams), 1, figsize=(11, 2.6 * len(streams)), squeeze=False)
    try:
        for n, tl in enumerate(streams):
            ax = axes[n][0]
            labels = tl.labels
            spans = tl.spans()
            t = [(s + e) / 2 for s, e in spans]
            rows = [
                [max(0.0, float((w.get("scores") or {}).get(k) or 0)) for k in labels] for w in tl.windows
            ]
            # hold the first and last windows' scores out to the recording's edges
            t = np.array([tl.start, *t, tl.end])
            m = np.array([rows[0], *rows, rows[-1]])
            tot = m.sum(axis=1, keepdims=True)
            m = np.divide(m, tot, out=np.zeros_like(m), where=tot > 0)
            ax.stackplot(t, m.T, colors=[color_of(k, labels) for k in labels], linewidth=0)
            # the label band under the scores, one bar per window
            ax.broken_barh(
                [(s, max(e - s, 1e-3)) for s, e in spans],
                (-0.16, 0.11),
                facecolors=[color_of(w["label"], labels) for w in tl.windows],
                linewidth=0,
            )
            ax.set_xlim(tl.start, tl.end)
            ax.set_ylim(-0.17, 1)
            ax.set_yticks([0, 0.5, 1.0])
            ax.set_ylabel("score")
            ax.set_xlabel("seconds" if n == len(streams) - 1 else "")
            ax.set_title(
                f"{tl.stream}  ({len(tl.windows)} windows; bar below: window label)", loc="left", fontsize=10
            )
            used = [
                k
                for k in labels
                if m[:, labels.index(k)].max() > 0 or any(w["label"] == k for w in tl.windows)
            ]
            ax.legend(
                handles=[Patch(color=color_of(k, labels), label=k) for k in used],
                loc="upper left",
                bbox_to_anchor=(1.0, 1.0),
                fontsize=8,
                frameon=False,
            )
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=dpi, metadata={"Software": GENERATOR})
    finally:
        plt.close(fig)
    return out

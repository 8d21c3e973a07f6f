"""Write a report (HTML, and the PNG beside it) from results, applying the retention limit.

One function for both `affectstream report FILE` and `affectstream run --report`, so the two outputs
cannot differ. The PNG needs matplotlib (the `metrics` extra); without it the HTML is still written and
the caller is told why the PNG is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from affectstream.streams.report.html import render_html
from affectstream.streams.report.load import ReportError, Results
from affectstream.streams.retention import prune_outputs


@dataclass
class Written:
    html: Path
    png: Path | None = None
    notes: list[str] = field(default_factory=list)  # one line each, for stderr
    pruned: list[Path] = field(default_factory=list)


def check_output(out: str | Path) -> Path:
    """The report path, checked before any work (a run must not analyse for an hour, then fail here)."""
    p = Path(out).expanduser()
    if p.is_dir():
        raise ReportError(f"report: {p} is a directory; give a file name such as report.html")
    if not p.parent.exists():
        raise ReportError(f"report: folder {p.parent} does not exist")
    return p


def write_report(
    results: Results,
    out: str | Path,
    *,
    png: bool = True,
    retention_hours: float | None = None,
    title: str | None = None,
) -> Written:
    """Write OUT (HTML) and OUT with .png; with a retention limit, first delete older outputs there."""
    p = check_output(out)
    png_path = p.with_suffix(".png") if png else None
    w = Written(p)
    if retention_hours is not None:
        keep = [p] + ([png_path] if png_path else [])
        w.pruned = prune_outputs(p.parent, retention_hours * 3600, keep=keep)
    try:
        p.write_text(render_html(results, title=title), encoding="utf-8")
    except OSError as e:
        raise ReportError(f"report: cannot write {p}: {e.strerror or e}") from None
    if png_path is not None:
        try:
            from affectstream.streams.report.png import render_png

            w.png = render_png(results, png_path)
        except ImportError as e:
            w.notes.append(f"no PNG: {e.name} is not installed (pip install 'affectstream[metrics]')")
        except OSError as e:
            w.notes.append(f"no PNG: cannot write {png_path}: {e.strerror or e}")
    if results.expired:
        w.notes.append(f"{results.expired} result(s) older than privacy.retention_hours left out")
    return w

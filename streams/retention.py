"""Retention for what affectstream writes to disk (JSONL results, HTML reports, report PNGs).

Results about people's emotions are personal data; keeping them forever by accident is the usual
failure. With `privacy.retention_hours` set, every time affectstream writes an output it first deletes
its *own* earlier outputs in that folder whose last modification is older than the limit, and a report
leaves out results older than the limit. "Its own" is decided by content, never by name alone: a JSONL
file whose first line is an affectstream payload, an HTML file carrying the report's generator tag, a
PNG carrying it in its metadata. Any other file in the folder is never touched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("affectstream.retention")

GENERATOR = "affectstream-report"  # also written by streams/report (meta tag, PNG `Software`)
_SUFFIXES = {".jsonl", ".json", ".ndjson", ".html", ".htm", ".png"}


def is_affectstream_output(path: Path) -> bool:
    """True only for files affectstream wrote (checked by content: 4 KiB at most are read)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm", ".png"):
        return GENERATOR.encode() in head
    first = head.split(b"\n", 1)[0]
    try:
        obj = json.loads(first)
    except ValueError:
        return False
    return isinstance(obj, dict) and str(obj.get("schema", "")).startswith("affectstream.")


def prune_outputs(
    folder: str | Path, max_age_s: float, *, now: float | None = None, keep: Iterable[str | Path] = ()
) -> list[Path]:
    """Delete affectstream outputs in `folder` (not recursive) last modified more than `max_age_s` ago.

    `keep` names files that must survive (the output about to be written). Returns what was deleted;
    a file that cannot be deleted is logged and left.
    """
    base = Path(folder).expanduser()
    if not base.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - max_age_s
    spared = {Path(k).expanduser().resolve() for k in keep}
    deleted: list[Path] = []
    for p in sorted(base.iterdir()):
        if p.suffix.lower() not in _SUFFIXES or not p.is_file() or p.is_symlink():
            continue
        if p.resolve() in spared:
            continue
        try:
            if p.stat().st_mtime >= cutoff or not is_affectstream_output(p):
                continue
            p.unlink()
        except OSError as e:
            log.warning("retention: cannot delete %s: %s", p, e)
            continue
        deleted.append(p)
    return deleted

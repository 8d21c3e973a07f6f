"""Timeline reports of finished recordings: one self-contained HTML page plus a PNG, from the JSONL results.

People read a recording's emotions faster from a picture than from lines of JSON, and the page must open
anywhere (mail attachment, air-gapped machine), so everything is rendered server-side into one file with
inline SVG, CSS and a few lines of JavaScript; it fetches nothing.
"""

from affectstream.streams.report.load import ReportError, Results, StreamTimeline, from_records, load_results

__all__ = ["ReportError", "Results", "StreamTimeline", "from_records", "load_results"]

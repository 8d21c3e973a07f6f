"""JSONL sink: every message as one JSON object per line, to a file or stdout (`-`).

For piping into `jq`, logging a run, or machines without a broker. Each line is the MQTT payload plus a
`kind` field naming the topic it would have on MQTT (`window`, `state`, `reasoning`, `events`, `stats`),
so one file carries everything and can be filtered by kind. Writes are line-buffered so a reader sees a
line as soon as it is produced; a failing write (full disk, closed pipe) is counted, never raised.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import IO, Any

from affectstream.engine.types import ReasoningResult, WindowResult
from affectstream.streams.sinks.base import Sink

log = logging.getLogger("affectstream.jsonl")


class JsonlSinkError(RuntimeError):
    """The output cannot be opened (one line naming the path and the reason)."""


class JsonlSink(Sink):
    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = str(path)
        self.append = append
        self._fh: IO[str] | None = None
        self._own = False
        self._broken = False
        self._failure: str | None = None
        self._counts = {"written": 0, "errors": 0}

    async def start(self) -> None:
        """Open the output; raises `JsonlSinkError` if it cannot be opened (a configuration error)."""
        if self._fh is not None:
            return
        if self.path == "-":
            self._fh = sys.stdout
            return
        p = Path(self.path).expanduser()
        if p.is_dir():
            raise JsonlSinkError(f"jsonl: {p} is a directory; give a file path or '-' for stdout")
        try:
            self._fh = p.open("a" if self.append else "w", encoding="utf-8", buffering=1)
        except OSError as exc:
            raise JsonlSinkError(f"jsonl: cannot open {p} for writing: {exc.strerror or exc}") from None
        self._own = True

    async def publish_window(self, result: WindowResult) -> None:
        self._write("window", result.to_payload())

    async def publish_state(self, stream: str, payload: dict[str, Any]) -> None:
        self._write("state", payload)

    async def publish_reasoning(self, result: ReasoningResult) -> None:
        self._write("reasoning", result.to_payload())

    async def publish_event(self, payload: dict[str, Any]) -> None:
        self._write("events", payload)

    async def publish_stats(self, payload: dict[str, Any]) -> None:
        self._write("stats", payload)

    def stats(self) -> dict[str, Any]:
        return dict(self._counts)

    def failure(self) -> str | None:
        return self._failure

    async def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        try:
            fh.flush()
            if self._own:
                fh.close()
        except OSError as exc:
            self._counts["errors"] += 1
            self._failure = self._failure or f"jsonl: closing {self.path} failed: {exc.strerror or exc}"
            log.warning("jsonl: closing %s failed: %s", self.path, exc)

    def _write(self, kind: str, payload: dict[str, Any]) -> None:
        if self._fh is None or self._broken:
            self._counts["errors"] += 1
            return
        try:
            line = json.dumps(
                {"kind": kind, **payload}, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
            self._fh.write(line + "\n")
            if not self._own:
                self._fh.flush()
            self._counts["written"] += 1
        except (TypeError, ValueError) as exc:
            self._counts["errors"] += 1
            log.warning("jsonl: skipped a %s message that is not valid JSON: %s", kind, exc)
        except OSError as exc:  # EPIPE (reader went away), ENOSPC ...: stop writing, keep the engine alive
            self._counts["errors"] += 1
            self._broken = True
            self._failure = f"jsonl: writing to {self.path} failed: {exc.strerror or exc}"
            log.warning("jsonl: writing to %s failed, output disabled: %s", self.path, exc)

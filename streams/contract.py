"""The MQTT contract in code: topic names, payload schemas, validation, and the `stats` payload builder.

Other apps subscribe to these topics and parse these payloads, so they are a public API. The JSON
Schemas shipped in `streams/schemas/` are the single source of truth; `validate()` checks a payload
against them and names the first problem in one line, so a test (or a suspicious user) can tell exactly
which field broke the contract.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

KINDS: tuple[str, ...] = ("window", "state", "reasoning", "events", "stats")
SCHEMA_DIR = Path(__file__).parent / "schemas"
TOPIC_ROOT = "affectstream"
_BAD_SEGMENT = re.compile(r"[/#+\s\x00]")


class ContractError(ValueError):
    """A payload that does not match its schema (message: kind, JSON path and the problem)."""


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one payload kind, loaded from the package data."""
    if kind not in KINDS:
        raise ContractError(f"unknown payload kind {kind!r}; expected one of {', '.join(KINDS)}")
    return json.loads((SCHEMA_DIR / f"{kind}.json").read_text())


@cache
def _validator(kind: str) -> Draft202012Validator:
    s = schema(kind)
    Draft202012Validator.check_schema(s)
    return Draft202012Validator(s)


def validate(kind: str, payload: Mapping[str, Any]) -> None:
    """Raise `ContractError` naming the first violation if `payload` is not a valid `kind` message."""
    err = next(iter(sorted(_validator(kind).iter_errors(payload), key=lambda e: list(e.path))), None)
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        raise ContractError(f"{kind} payload invalid at {where}: {err.message}")


def is_valid(kind: str, payload: Mapping[str, Any]) -> bool:
    return not any(True for _ in _validator(kind).iter_errors(payload))


def check_segment(name: str, what: str = "stream id") -> str:
    """A topic segment must not contain `/`, wildcards or whitespace, or subscribers would mis-route it."""
    if not name or _BAD_SEGMENT.search(name) or len(name) > 64:
        raise ValueError(f"invalid {what} {name!r}: use 1-64 characters without '/', '+', '#' or spaces")
    return name


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under `affectstream/<node_id>` (or a custom prefix)."""

    prefix: str

    @classmethod
    def for_node(cls, node_id: str, prefix: str | None = None) -> Topics:
        if prefix is None:
            return cls(f"{TOPIC_ROOT}/{check_segment(node_id, 'node id')}")
        if not prefix or "#" in prefix or "+" in prefix or prefix.endswith("/"):
            raise ValueError(f"invalid topic prefix {prefix!r}: no wildcards and no trailing '/'")
        return cls(prefix)

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def stream(self, stream: str, kind: str) -> str:
        """`<prefix>/<stream>/<kind>` for the per-stream kinds (state, window, reasoning)."""
        return f"{self.prefix}/{check_segment(stream)}/{kind}"


def stats_payload(
    node: str,
    streams: Mapping[str, Mapping[str, Any]],
    sinks: Mapping[str, Mapping[str, Any]],
    uptime_s: float,
    ts: float | None = None,
    **node_fields: Any,
) -> dict[str, Any]:
    """The node-wide `stats` message — the one builder (the Pipeline publishes what this returns).

    `streams` maps stream id to counters such as `fps_in`, `fps_processed`, `windows`,
    `windows_dropped` and `latency_ms: {stage: {p50, p95}}` (percentiles from engine/metrics.py);
    `sinks` maps sink name to its `stats()`; `node_fields` adds node-wide sections (latency, executor,
    reasoning, runtime...). `stream` is null because the message is about the whole node, not one stream.
    """
    payload: dict[str, Any] = {
        "schema": "affectstream.stats/1",
        "stream": None,
        "ts": round(time.time() if ts is None else ts, 3),
        "node": node,
        "uptime_s": round(max(0.0, float(uptime_s)), 3),
    }
    payload.update(node_fields)
    payload["streams"] = {k: dict(v) for k, v in streams.items()}
    payload["sinks"] = {k: dict(v) for k, v in sinks.items()}
    return payload

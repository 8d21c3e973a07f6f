"""The shipped JSON Schemas: well-formed, matched by what the code produces, and strict where it matters."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from affectstream.engine.metrics import LatencySeries
from affectstream.engine.smoother import Smoother
from affectstream.engine.types import ReasoningResult
from affectstream.streams.contract import (
    KINDS,
    SCHEMA_DIR,
    ContractError,
    Topics,
    is_valid,
    schema,
    stats_payload,
    validate,
)
from fixtures_mqtt import make_result
from jsonschema import Draft202012Validator


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_valid_2020_12_and_name_their_kind(kind: str) -> None:
    s = schema(kind)
    Draft202012Validator.check_schema(s)
    assert s["properties"]["schema"]["const"] == f"affectstream.{kind}/1"
    assert {"schema", "stream", "ts"} <= set(s["required"])  # every payload carries these
    assert (SCHEMA_DIR / f"{kind}.json").is_file()


def _payloads() -> dict[str, dict]:
    rng = np.random.default_rng(2)
    sm = Smoother()
    r = make_result("cam1", 0, rng)
    up = sm.update(r)
    reasoning = ReasoningResult(
        "cam1", r.window, "smiling mouth, raised cheeks", None, False, "m", 12.5, fallback_label="happy"
    )
    lat = LatencySeries()
    for ms in (3.0, 4.0, 9.0):
        lat.add(ms)
    stats = stats_payload(
        "node1",
        {"cam1": {"fps_in": 30.0, "fps_processed": 8.0, "windows": 3, "windows_dropped": 0,
                  "latency_ms": {"fast_path": lat.percentiles()}}},
        {"mqtt": {"queued": 0, "dropped": 0}},
        12.0,
    )  # fmt: skip
    return {
        "window": r.to_payload(),
        "state": up.state,
        "events": up.events[0],
        "reasoning": reasoning.to_payload(),
        "stats": stats,
    }


def test_produced_payloads_validate() -> None:
    for kind, p in _payloads().items():
        validate(kind, json.loads(json.dumps(p)))  # as a subscriber sees it


@pytest.mark.parametrize(
    ("kind", "mutate", "where"),
    [
        ("window", lambda p: p.update(score=1.5), "score"),
        ("window", lambda p: p.pop("label"), "<root>"),
        ("window", lambda p: p["scores"].update(happy=-0.1), "scores/happy"),
        ("window", lambda p: p["faces"][0].update(box=[1, 2, 3]), "faces/0/box"),
        ("window", lambda p: p.update(stream="a/b"), "stream"),
        ("window", lambda p: p.update(schema="affectstream.window/2"), "schema"),
        ("state", lambda p: p.update(label="Happy!"), "label"),
        ("events", lambda p: p.update(type="begin"), "type"),
        ("stats", lambda p: p.update(stream="cam1"), "stream"),
        ("reasoning", lambda p: p.update(valid="yes"), "valid"),
    ],
)
def test_broken_payloads_are_rejected_with_the_field_named(kind, mutate, where) -> None:
    p = copy.deepcopy(_payloads()[kind])
    mutate(p)
    assert not is_valid(kind, p)
    with pytest.raises(ContractError, match=f"^{kind} payload invalid at {where}:") as exc:
        validate(kind, p)
    assert "\n" not in str(exc.value)


def test_added_fields_are_allowed() -> None:
    p = _payloads()["window"]
    p["transcript_lang"] = "en"  # profiles may add fields freely
    validate("window", p)


def test_unknown_kind_and_topic_segments() -> None:
    with pytest.raises(ContractError, match="unknown payload kind"):
        validate("frames", {})
    t = Topics.for_node("n1")
    assert (t.available, t.events, t.stats) == (
        "affectstream/n1/available",
        "affectstream/n1/events",
        "affectstream/n1/stats",
    )
    assert t.stream("cam1", "state") == "affectstream/n1/cam1/state"
    for bad in ["", "a/b", "a+b", "#", "a b"]:
        with pytest.raises(ValueError, match="invalid stream id"):
            t.stream(bad, "state")
    with pytest.raises(ValueError, match="prefix"):
        Topics.for_node("n1", prefix="x/#")

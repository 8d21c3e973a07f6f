"""Fuzz the settings loader (hypothesis): whatever a config file, a flag or an env var holds, loading
either gives valid `Settings` or raises `SettingsError` with one line, never another exception.

Three doors are fuzzed: the raw text of the TOML file (mostly-broken TOML), well-formed TOML with real
and made-up keys holding values of every type (NaN and infinities included), and `--mqtt` URLs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from affectstream.engine.config import Settings, SettingsError, load_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SECTIONS = {
    name: sorted(getattr(f.annotation, "model_fields", {}))
    for name, f in Settings.model_fields.items()
    if hasattr(f.annotation, "model_fields")
}
TOP = sorted(k for k in Settings.model_fields if k not in SECTIONS)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("AFFECTSTREAM_") and k != "AFFECTSTREAM_HOME":
            monkeypatch.delenv(k)


def _load_file(tmp: Path, text: str) -> Settings | None:
    cfg = tmp / "fuzz.toml"
    cfg.write_text(text, encoding="utf-8")
    try:
        s = load_settings(cfg)
    except SettingsError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return None
    _check_valid(s)
    return s


def _check_valid(s: Settings) -> None:
    """What loaded must be usable: finite positive window, a QoS MQTT knows, JSON-printable."""
    assert math.isfinite(s.window.length) and s.window.length > 0
    assert math.isfinite(s.window.hop) and s.window.hop > 0
    assert s.mqtt.window_qos in (0, 1)
    json.loads(s.to_json())


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # a TOML basic string is a JSON string


values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["mqtt://127.0.0.1:1883", "mqtt://h:0", "lite", "r1-omni", "auto", "-", "short"]),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
)
keys = st.one_of(
    st.sampled_from(sorted({k for ks in SECTIONS.values() for k in ks})),
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    lines = [
        f"{k} = {_toml_value(draw(values))}"
        for k in draw(st.lists(st.sampled_from([*TOP, "bogus"]), max_size=3, unique=True))
    ]
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "nosuch"]), max_size=4, unique=True)):
        lines.append(f"[{section}]")
        known = SECTIONS.get(section, [])
        names = draw(st.lists(st.one_of(st.sampled_from(known or ["x"]), keys), max_size=4, unique=True))
        lines += [f"{k} = {_toml_value(draw(values))}" for k in names]
    return "\n".join(lines) + "\n"


@FUZZ
@given(
    text=st.text(
        alphabet=st.sampled_from(list("[]=.\"'#\n abcdehlnopqrstuvwxyz0123456789-+_{},")), max_size=120
    )
)
def test_any_text_as_a_config_file(tmp_path: Path, text: str) -> None:
    _load_file(tmp_path, text)


@FUZZ
@given(doc=toml_documents())
def test_well_formed_toml_with_any_keys_and_values(tmp_path: Path, doc: str) -> None:
    _load_file(tmp_path, doc)


@FUZZ
@given(
    hop=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)),
    length=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    node=st.one_of(st.none(), st.text(max_size=70)),
)
def test_any_flag_values(hop: float, length: float | None, node: str | None) -> None:
    try:
        s = load_settings(None, {"window.hop": hop, "window.length": length, "mqtt.node_id": node})
    except SettingsError as e:
        assert "\n" not in str(e)
    else:
        _check_valid(s)


@FUZZ
@given(
    scheme=st.sampled_from(["mqtt", "mqtts", "tcp", "ssl", "http", "", "MQTT"]),
    userinfo=st.sampled_from(["", "u@", "u:p@", ":@", "u:p%40@"]),
    host=st.sampled_from(["127.0.0.1", "", "[::1]", "h", "h h"]),
    port=st.one_of(
        st.just(""), st.integers(-1, 70000).map(lambda p: f":{p}"), st.text(max_size=4).map(lambda t: f":{t}")
    ),
    query=st.lists(
        st.tuples(
            st.sampled_from(
                ["node", "window_qos", "qos", "client_id", "ca", "insecure", "keepalive", "nope"]
            ),
            st.text(max_size=6),
        ),
        max_size=3,
    ),
)
def test_any_mqtt_url(scheme: str, userinfo: str, host: str, port: str, query: list[tuple[str, str]]) -> None:
    q = "&".join(f"{k}={v}" for k, v in query)
    url = f"{scheme}://{userinfo}{host}{port}" + (f"?{q}" if q else "")
    try:
        s = load_settings(None, {"mqtt.url": url})
    except SettingsError as e:
        msg = str(e)
        assert "\n" not in msg
        if ":p@" in url:
            assert ":p@" not in msg  # the password never appears in an error line
    else:
        _check_valid(s)
        assert ":p@" not in s.to_json()

"""Every bad setting is one clear line (setting, where it came from, what is wrong), exit code 2, found
before any model loads; every setting is settable from the environment; `--mqtt` URL options work or
are refused; `--print-config` never shows the MQTT password.

Before the fix these printed Python tracebacks (invalid TOML, unknown key, `--hop -1/0/nan`,
`window_qos = 2`, `AFFECTSTREAM_WINDOW__HOP=-3`, `AFFECTSTREAM_MQTT__WINDOW_QOS=1`), `--hop inf` failed
only after the models had loaded, URL options were silently ignored and `mqtt://host:0` used 1883.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from affectstream.engine.config import (
    MqttSettings,
    Settings,
    SettingsError,
    env_name,
    load_settings,
    parse_mqtt_url,
)
from affectstream.engine.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.mp4"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("AFFECTSTREAM_") and k != "AFFECTSTREAM_HOME":
            monkeypatch.delenv(k)


def _error(config: Path | None = None, **overrides: object) -> str:
    with pytest.raises(SettingsError) as e:
        load_settings(config, {k.replace("__", "."): v for k, v in overrides.items()})
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert isinstance(e.value, UsageError)
    return msg


@pytest.mark.parametrize("hop", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_hop_names_the_setting_and_the_flag(hop: float) -> None:
    msg = _error(window__hop=hop)
    assert "window.hop" in msg and "--hop" in msg


def test_invalid_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("[window\nhop = 1\n")
    msg = _error(cfg)
    assert str(cfg) in msg and "invalid TOML" in msg and "line 1" in msg


def test_unknown_key_names_the_valid_ones(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("[window]\nlenght = 3\n")
    msg = _error(cfg)
    assert "window.lenght" in msg and "length" in msg and str(cfg) in msg


def test_window_qos_2_in_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("[mqtt]\nwindow_qos = 2\n")
    msg = _error(cfg)
    assert "mqtt.window_qos" in msg and str(cfg) in msg


def test_missing_config_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.toml")


def test_env_var_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFECTSTREAM_WINDOW__HOP", "-3")
    msg = _error()
    assert "window.hop" in msg and "AFFECTSTREAM_WINDOW__HOP" in msg


def test_every_setting_is_settable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README promises `AFFECTSTREAM_<SECTION>__<KEY>` for every setting; the QoS one crashed."""
    monkeypatch.setenv("AFFECTSTREAM_MQTT__WINDOW_QOS", "1")
    assert load_settings().mqtt.window_qos == 1
    monkeypatch.delenv("AFFECTSTREAM_MQTT__WINDOW_QOS")
    samples = {int: "3", float: "0.5", bool: "true", str: "x1"}
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not isinstance(model, type) or not hasattr(model, "model_fields"):
            continue
        for key, sub in model.model_fields.items():
            ann = sub.annotation
            value = next((v for t, v in samples.items() if ann is t or ann == (t | None)), None)
            if value is None:
                continue
            name = env_name(f"{section}.{key}")
            monkeypatch.setenv(name, value)
            try:
                got = getattr(getattr(load_settings(), section), key)
            except SettingsError as e:  # a value this setting rejects: a clear line naming the variable
                assert name in str(e)
            else:
                assert str(got).lower() in (value, "3.0", "0.5") or got == type(got)(value), (name, got)
            finally:
                monkeypatch.delenv(name)


def test_mqtt_url_options_are_applied() -> None:
    m = load_settings(
        None, {"mqtt.url": "mqtt://u:p%40ss@127.0.0.1:1884?window_qos=1&node=x&client_id=c1"}
    ).mqtt
    assert (m.window_qos, m.node_id, m.client_id, m.username, m.password) == (1, "x", "c1", "u", "p@ss")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mqtt://127.0.0.1?window_qos=x", "window_qos"),
        ("mqtt://127.0.0.1?window_qos=2", "window_qos"),
        ("mqtt://127.0.0.1?colour=blue", "unknown URL option 'colour'"),
        ("mqtt://127.0.0.1:0", "port 0"),
        ("mqtt://127.0.0.1:70000", "port"),
        ("http://127.0.0.1", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://127.0.0.1?node=a/b", "node_id"),
    ],
)
def test_bad_mqtt_urls_are_refused(url: str, words: str) -> None:
    msg = _error(mqtt__url=url)
    assert words in msg, msg


def test_same_setting_twice_with_different_values_is_refused() -> None:
    msg = _error(mqtt__url="mqtt://127.0.0.1?node=a", mqtt__node_id="b")
    assert "node_id" in msg and "twice" in msg
    assert (
        load_settings(None, {"mqtt.url": "mqtt://127.0.0.1?node=a", "mqtt.node_id": "a"}).mqtt.node_id == "a"
    )


def test_port_zero_is_not_the_default_port() -> None:
    with pytest.raises(ValueError, match="port 0"):
        parse_mqtt_url("mqtt://127.0.0.1:0")
    assert parse_mqtt_url("mqtt://127.0.0.1").port == 1883
    assert parse_mqtt_url("mqtts://127.0.0.1").port == 8883


def test_print_config_redacts_the_password() -> None:
    s = load_settings(None, {"mqtt.url": "mqtt://alice:s3cret@127.0.0.1:1883"})
    s2 = load_settings(None, {"mqtt.password": "t0psecret", "mqtt.username": "bob"})
    for text in (s.to_json(), s2.to_json()):
        assert "s3cret" not in text and "t0psecret" not in text
        assert "***" in text
    assert s.mqtt.password == "s3cret"  # redacted only when shown


def test_jsonl_paths_that_cannot_work(tmp_path: Path) -> None:
    assert "does not exist" in _error(jsonl=str(tmp_path / "missing" / "out.jsonl"))
    assert "is a directory" in _error(jsonl=str(tmp_path))
    assert load_settings(None, {"jsonl": str(tmp_path / "ok.jsonl")}).jsonl


def test_mqtt_settings_model_is_strict() -> None:
    with pytest.raises(ValueError):
        MqttSettings(nope=1)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- through the command line
def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AFFECTSTREAM_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "affectstream.engine.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--hop", "-1"], {}, "window.hop"),
        (["--hop", "inf"], {}, "finite"),
        (["--hop", "nan"], {}, "finite"),
        ([], {"AFFECTSTREAM_WINDOW__HOP": "-3"}, "AFFECTSTREAM_WINDOW__HOP"),
        (["--mqtt", "mqtt://127.0.0.1:0"], {}, "port 0"),
        (["--mqtt", "mqtt://127.0.0.1?window_qos=x"], {}, "window_qos"),
        (["--jsonl", "/nonexistent-dir/out.jsonl"], {}, "does not exist"),
    ],
)
def test_cli_bad_settings_exit_2_with_one_line_before_models_load(
    tmp_path: Path, args: list[str], env: dict[str, str], words: str
) -> None:
    # an empty home: had the run got as far as loading models it would start preparing a profile
    env = {**env, "AFFECTSTREAM_HOME": str(tmp_path / "home")}
    t0 = time.monotonic()
    r = _cli("run", str(SAMPLE), "--no-mqtt", *args, env=env)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert words in lines[0] and "Traceback" not in r.stderr
    assert "preparing" not in r.stderr and not (tmp_path / "home").exists()
    assert time.monotonic() - t0 < 30


def test_cli_invalid_toml_and_unknown_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('profile = "lite"\n[window]\nhop = \n')
    r = _cli("run", str(SAMPLE), "--config", str(bad), env={"AFFECTSTREAM_HOME": str(tmp_path)})
    assert r.returncode == 2 and "invalid TOML" in r.stderr and "Traceback" not in r.stderr
    bad.write_text("[mqtt]\nwindow_qos = 2\n")
    r = _cli("run", str(SAMPLE), "--config", str(bad), env={"AFFECTSTREAM_HOME": str(tmp_path)})
    assert r.returncode == 2 and "mqtt.window_qos" in r.stderr and "Traceback" not in r.stderr


def test_cli_print_config_env_qos_and_redaction(tmp_path: Path) -> None:
    r = _cli(
        "run",
        "--print-config",
        "--mqtt",
        "mqtt://alice:s3cret@127.0.0.1:1883?node=door",
        env={"AFFECTSTREAM_MQTT__WINDOW_QOS": "1", "AFFECTSTREAM_HOME": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout and '"window_qos": 1' in r.stdout and '"node_id": "door"' in r.stdout


def test_cli_serve_bad_port_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("aiortc")
    r = _cli("serve", "--port", "70000", env={"AFFECTSTREAM_HOME": str(tmp_path / "home")})
    assert r.returncode == 2, r.stderr
    assert "--port" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "home").exists()

"""Container health check: is this engine's MQTT availability topic `online`?

The engine publishes `<prefix>/<node_id>/available` = `online` (retained) after connecting and the
broker replaces it with `offline` (its Last Will) when the engine dies, so one retained read tells
both "the engine runs" and "it reaches the broker". Exit 0 healthy, 1 otherwise (Docker's contract).
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlparse

import paho.mqtt.client as mqtt


def mqtt_target() -> tuple[str, str, str, str | None, str | None]:
    """(url, prefix, node_id, user, password) exactly as the engine resolves them (AFFECTSTREAM_* env,
    optional AFFECTSTREAM_CONFIG TOML); without a broker URL the engine runs its embedded broker."""
    try:
        from pathlib import Path

        from affectstream.engine.config import load_settings

        cfg = os.environ.get("AFFECTSTREAM_CONFIG")
        m = load_settings(Path(cfg) if cfg else None, {}).mqtt
        url = m.url or f"mqtt://{m.embedded_host}:{m.embedded_port}"
        return url, m.prefix, m.node_id, m.username, m.password
    except ImportError:  # healthcheck copied somewhere without the package: plain environment
        url = os.environ.get("AFFECTSTREAM_MQTT__URL", "mqtt://127.0.0.1:1883")
        prefix = os.environ.get("AFFECTSTREAM_MQTT__PREFIX", "affectstream")
        node = os.environ.get("AFFECTSTREAM_MQTT__NODE_ID", "")
        return url, prefix, node, None, None


def main() -> int:
    raw_url, prefix, node, user, password = mqtt_target()
    url = urlparse(raw_url)
    if not node:
        print("unhealthy: AFFECTSTREAM_MQTT__NODE_ID not set", file=sys.stderr)
        return 1
    topic = f"{prefix}/{node}/available"
    got: list[bytes] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"health-{node}-{os.getpid()}")
    if url.username or user:
        c.username_pw_set(url.username or user, url.password or password)
    if url.scheme == "mqtts":
        c.tls_set()
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
    c.on_message = lambda _c, _u, msg: got.append(msg.payload)
    try:
        c.connect(url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883), 10)
    except OSError as e:
        print(f"unhealthy: broker unreachable ({e})", file=sys.stderr)
        return 1
    c.loop_start()
    deadline = time.monotonic() + float(os.environ.get("AFFECTSTREAM_HEALTH_WAIT", "5"))
    while not got and time.monotonic() < deadline:  # a retained message arrives right after SUBACK
        time.sleep(0.05)
    c.loop_stop()
    c.disconnect()
    state = got[0].decode(errors="replace") if got else "no retained state"
    if state == "online":
        return 0
    print(f"unhealthy: {topic} = {state}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

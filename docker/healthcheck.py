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


def main() -> int:
    url = urlparse(os.environ.get("AFFECTSTREAM_MQTT__URL", "mqtt://127.0.0.1:1883"))
    prefix = os.environ.get("AFFECTSTREAM_MQTT__PREFIX", "affectstream")
    node = os.environ.get("AFFECTSTREAM_MQTT__NODE_ID", "")
    if not node:
        print("unhealthy: AFFECTSTREAM_MQTT__NODE_ID not set", file=sys.stderr)
        return 1
    topic = f"{prefix}/{node}/available"
    got: list[bytes] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"health-{node}-{os.getpid()}")
    if url.username:
        c.username_pw_set(url.username, url.password)
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

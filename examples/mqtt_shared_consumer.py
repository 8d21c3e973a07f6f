"""Read the windows of every engine node with an MQTT 5 shared subscription, as one of N consumers.

Many engine nodes (or one Ray cluster) publish `affectstream/<node>/<stream>/window`. Start this script
several times with the same `--group`: the broker delivers each window to exactly one member of the
group (`$share/<group>/affectstream/+/+/window`), so consumers scale out like the engine does, and a
consumer that stops leaves its share to the others. Works with mosquitto >= 2.0, EMQX, HiveMQ.

    python examples/mqtt_shared_consumer.py --broker mqtt://127.0.0.1:1883 --group dashboards
    python examples/mqtt_shared_consumer.py --count 100 --jsonl        # stop after 100 windows

Each line: node, stream, window index, label, score (or the whole payload with --jsonl).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit

import aiomqtt


async def consume(broker: str, group: str, root: str, count: int | None, jsonl: bool, qos: int) -> int:
    u = urlsplit(broker)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        print(f"consumer: broker must be mqtt[s]://host[:port], got {broker!r}", file=sys.stderr)
        return 2
    topic = f"$share/{group}/{root}/+/+/window"
    seen = 0
    async with aiomqtt.Client(
        u.hostname,
        u.port or (8883 if u.scheme == "mqtts" else 1883),
        username=u.username,
        password=u.password,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_params=aiomqtt.TLSParameters() if u.scheme == "mqtts" else None,
    ) as client:
        await client.subscribe(topic, qos=qos)
        print(f"consumer: subscribed to {topic}", file=sys.stderr)
        async for msg in client.messages:
            _, node, stream, _ = str(msg.topic).split("/", 3)
            payload = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
            if jsonl:
                print(json.dumps({"node": node, **payload}), flush=True)
            else:
                w = payload["window"]
                print(
                    f"{node}/{stream} window {w['index']:>5} {payload['label']:<8} {payload['score']:.2f}",
                    flush=True,
                )
            seen += 1
            if count is not None and seen >= count:
                return 0
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument(
        "--group", default="affectstream-consumers", help="share group name (same in every member)"
    )
    ap.add_argument("--root", default="affectstream", help="topic root (mqtt.prefix)")
    ap.add_argument("--qos", type=int, choices=[0, 1], default=1)
    ap.add_argument("--count", type=int, help="exit after this many windows")
    ap.add_argument("--jsonl", action="store_true", help="print whole payloads as JSON lines")
    a = ap.parse_args()
    try:
        return asyncio.run(consume(a.broker, a.group, a.root, a.count, a.jsonl, a.qos))
    except aiomqtt.MqttError as e:
        print(f"consumer: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

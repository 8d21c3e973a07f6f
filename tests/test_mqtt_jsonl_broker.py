"""JSONL sink (file and stdout) and the embedded amqtt broker (loopback bind, taken port)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from affectstream.engine.smoother import Smoother
from affectstream.streams.broker import BrokerError, EmbeddedBroker
from affectstream.streams.contract import validate
from affectstream.streams.sinks.jsonl import JsonlSink, JsonlSinkError
from affectstream.streams.sinks.mqtt import MqttSink
from fixtures_mqtt import MOSQUITTO, Mosquitto, free_port, make_result


async def test_jsonl_file_one_valid_object_per_line(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    sink = JsonlSink(out)
    await sink.start()
    sm = Smoother()
    rng = np.random.default_rng(4)
    for i in range(5):
        r = make_result("cam1", i, rng)
        up = sm.update(r)
        await sink.publish_window(r)
        await sink.publish_state("cam1", up.state)
        for ev in up.events:
            await sink.publish_event(ev)
    assert len(out.read_text().splitlines()) >= 10  # line-buffered: visible before close
    await sink.close()
    lines = out.read_text().splitlines()
    kinds = []
    for line in lines:
        obj = json.loads(line)
        kind = obj.pop("kind")
        validate(kind, obj)
        kinds.append(kind)
    assert kinds.count("window") == 5 and kinds.count("state") == 5 and kinds[0] == "window"
    assert sink.stats() == {"written": len(lines), "errors": 0}


def test_jsonl_stdout_in_a_real_process() -> None:
    code = textwrap.dedent(
        """
        import asyncio, numpy as np, sys
        sys.path.insert(0, sys.argv[1])
        from fixtures_mqtt import make_result
        from affectstream.streams.sinks.jsonl import JsonlSink
        async def main():
            s = JsonlSink("-"); await s.start()
            rng = np.random.default_rng(0)
            for i in range(3):
                await s.publish_window(make_result("mic", i, rng))
            await s.close()
        asyncio.run(main())
        """
    )
    tests_dir = str(Path(__file__).parent)
    p = subprocess.run([sys.executable, "-c", code, tests_dir], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    objs = [json.loads(x) for x in p.stdout.splitlines()]
    assert [(o["kind"], o["window"]["index"]) for o in objs] == [("window", 0), ("window", 1), ("window", 2)]


async def test_jsonl_bad_path_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(
        JsonlSinkError, match=r"^jsonl: cannot open .*nodir/x\.jsonl for writing: No such file"
    ):
        await JsonlSink(tmp_path / "nodir" / "x.jsonl").start()
    with pytest.raises(JsonlSinkError, match="is a directory"):
        await JsonlSink(tmp_path).start()


async def test_jsonl_write_failure_is_counted_not_raised(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full not available")
    sink = JsonlSink("/dev/full", append=True)
    await sink.start()
    rng = np.random.default_rng(0)
    for i in range(3):
        await sink.publish_window(make_result("x", i, rng))  # ENOSPC surfaces at flush; never raises
    await sink.close()
    assert sink.stats()["errors"] >= 1


async def test_embedded_broker_serves_on_loopback_and_mosquitto_sub_sees_results() -> None:
    port = free_port()
    async with EmbeddedBroker(port=port) as broker:
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        sink = MqttSink(broker.url, node_id="emb")
        await sink.start()
        assert sink.connected
        sm = Smoother()
        r = make_result("cam1", 0, np.random.default_rng(0))
        await sink.publish_window(r)
        await sink.publish_state("cam1", sm.update(r).state)
        assert await sink.wait_idle(5)
        # A real third-party client, late, sees the retained topics (what the README promises).
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "affectstream/#", "-v", "-W", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        await sink.close()
    lines = dict(line.split(" ", 1) for line in out.decode().splitlines())
    assert lines["affectstream/emb/available"] == "online"
    validate("state", json.loads(lines["affectstream/emb/cam1/state"]))
    assert not broker.running


@pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed")
async def test_embedded_broker_port_taken_says_use_mqtt(mosquitto: Mosquitto) -> None:
    with pytest.raises(
        BrokerError,
        match=rf"127\.0\.0\.1:{mosquitto.port} is already in use.*--mqtt mqtt://127\.0\.0\.1:{mosquitto.port}",
    ):
        await EmbeddedBroker(port=mosquitto.port).start()


def _listeners(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) with a listening socket on `port`."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if state == "0A" and int(p, 16) == port:
                    out.add(addr)
    return out


async def test_embedded_broker_binds_only_loopback() -> None:
    port = free_port()
    async with EmbeddedBroker(port=port):
        assert _listeners(port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or other addresses
    assert _listeners(port) == set()

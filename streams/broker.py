"""The embedded MQTT broker: results are watchable with `mosquitto_sub` even when no broker is configured.

amqtt runs inside the engine's event loop (it starts in tens of milliseconds). It is bound explicitly to
127.0.0.1, because amqtt's own default listens on every interface, and a demo default must not expose
results to the network. amqtt speaks MQTT 3.1.1 and is slower than mosquitto at QoS 1, which is fine for
a default; deployments pass `--mqtt URL` to use a real broker.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any

log = logging.getLogger("affectstream.broker")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883


class BrokerError(RuntimeError):
    """The embedded broker could not start (one line: why, and what to do instead)."""


def _port_taken_message(host: str, port: int) -> str:
    return (
        f"cannot start the embedded MQTT broker: {host}:{port} is already in use (another broker?); "
        f"publish to it with --mqtt mqtt://{host}:{port}, or pick another port, or use --no-mqtt"
    )


def _check_port(host: str, port: int) -> None:
    """Fail early with a clear message instead of amqtt's traceback when the port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(_port_taken_message(host, port)) from None
            raise BrokerError(
                f"cannot start the embedded MQTT broker on {host}:{port}: {exc.strerror}"
            ) from None


class EmbeddedBroker:
    """`async with EmbeddedBroker() as b:` ... `b.url` is what the MQTT sink connects to."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("embedded broker bound to %s: results are reachable from the network", host)
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        if self._broker is not None:
            return
        _check_port(self.host, self.port)
        from amqtt.broker import Broker  # imported lazily: only needed when no --mqtt is given

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {
                "default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 64}
            },
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config, loop=asyncio.get_running_loop())
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own BrokerError
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise BrokerError(_port_taken_message(self.host, self.port)) from None
            raise BrokerError(
                f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {exc}"
            ) from None
        self._broker = broker
        log.info("embedded MQTT broker listening on %s", self.url)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            try:
                await broker.shutdown()
            except Exception as exc:  # shutting down must never take the engine's exit path with it
                log.warning("embedded broker shutdown: %s", exc)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

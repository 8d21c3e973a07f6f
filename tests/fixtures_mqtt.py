"""A real mosquitto broker for tests, plus helpers to subscribe and collect messages.

Each broker runs from a temporary config on a free 127.0.0.1 port and is stopped by PID. As root,
mosquitto drops to user `mosquitto`, so its folder (config, password file, TLS key, persistence db) is
handed to that user. Persistence is on so a broker killed and restarted keeps its subscriptions, which is
what lets the restart test check delivery end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import numpy as np
import pytest
from affectstream.engine.labels import EMOTIONS
from affectstream.engine.types import FaceResult, VoiceResult, WindowRef, WindowResult

HOST = "127.0.0.1"
MOSQUITTO = shutil.which("mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _give_to_mosquitto(path: Path) -> None:
    """mosquitto started as root runs as user `mosquitto`: it must be able to read and write its folder."""
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, pw.pw_uid, pw.pw_gid)


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    folder.mkdir(parents=True, exist_ok=True)

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=affectstream-test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")


@dataclass
class Mosquitto:
    """One mosquitto process. `stop()`/`start()` keep the port and the persistence db."""

    users: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    port: int = field(default_factory=free_port)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="affectstream-mosq-")))
    proc: subprocess.Popen[bytes] | None = None
    tls_files: TlsFiles | None = None

    def __post_init__(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 1",
            "autosave_on_changes true",  # save after every change: a SIGKILL loses no settled session state
            f"log_dest file {self.folder}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
        ]
        if self.users:
            pw = self.folder / "passwd"
            pw.touch()
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True, timeout=30)
            lines.append(f"password_file {pw}")
        if self.tls:
            self.tls_files = make_tls(self.folder / "tls")
            lines += [
                f"cafile {self.tls_files.ca}",
                f"certfile {self.tls_files.cert}",
                f"keyfile {self.tls_files.key}",
            ]
        (self.folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        _give_to_mosquitto(self.folder)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert MOSQUITTO, "mosquitto is not installed (apt-get install mosquitto)"
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {HOST}:{self.port} within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        p = self.folder / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def running_mosquitto(**kw: object) -> Iterator[Mosquitto]:
    m = Mosquitto(**kw)  # type: ignore[arg-type]
    try:
        m.start()
        yield m
    finally:
        m.cleanup()


needs_mosquitto = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto not installed (apt-get install mosquitto)"
)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """An anonymous mosquitto on a free 127.0.0.1 port."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    with running_mosquitto() as m:
        yield m


@pytest.fixture
def mosquitto_auth() -> Iterator[Mosquitto]:
    """A mosquitto that only accepts user `alice` with password `wonder land:1` (anonymous refused)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    with running_mosquitto(users={"alice": "wonder land:1"}) as m:
        yield m


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    t: float
    dup: bool = False  # MQTT DUP flag: the broker re-delivers a message it already sent (QoS 1)


class Collector:
    """Subscribes on a real connection and records every message; reconnects if the broker goes away.

    With `client_id` set, the session is persistent (clean_session=False), so messages published while
    this subscriber is reconnecting are kept by the broker and delivered afterwards.
    """

    def __init__(
        self,
        port: int,
        topic: str,
        qos: int = 1,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.port, self.topic, self.qos = port, topic, qos
        self.client_id = client_id
        self.username, self.password = username, password
        self.messages: list[Received] = []
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                c = aiomqtt.Client(
                    HOST,
                    self.port,
                    identifier=self.client_id,
                    clean_session=not self.client_id,
                    username=self.username,
                    password=self.password,
                    keepalive=5,
                )
                dups = self._tap_dup_flags(c)
                async with c:
                    self.connects += 1
                    if not self._subscribed.is_set() or not self.client_id:
                        await c.subscribe(self.topic, qos=self.qos)
                        self._subscribed.set()
                    async for m in c.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        dup = dups.popleft() if dups else False
                        self.messages.append(
                            Received(str(m.topic), payload, m.retain, m.qos, time.monotonic(), dup)
                        )
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    @staticmethod
    def _tap_dup_flags(c: aiomqtt.Client) -> deque[bool]:
        """aiomqtt's Message drops paho's DUP flag; record it, in arrival order, from paho's callback."""
        flags: deque[bool] = deque()
        inner = c._client.on_message

        def on_message(client: object, userdata: object, msg: object) -> None:
            flags.append(bool(getattr(msg, "dup", False)))
            inner(client, userdata, msg)

        c._client.on_message = on_message
        return flags

    def on(self, suffix: str) -> list[Received]:
        return [m for m in self.messages if m.topic.endswith(suffix)]

    async def wait_for(self, pred: Callable[[list[Received]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not pred(self.messages):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@contextlib.asynccontextmanager
async def collecting(port: int, topic: str, **kw: object) -> AsyncIterator[Collector]:
    async with Collector(port, topic, **kw) as c:  # type: ignore[arg-type]
        yield c


async def retained_now(
    port: int, topic: str, settle_s: float = 0.3, timeout: float = 5.0, **kw: object
) -> dict[str, bytes]:
    """What a subscriber that connects *now* gets as retained messages (topic -> payload).

    Retained messages follow the SUBACK at once; we wait until they stop coming (`settle_s` of quiet,
    at most `timeout`), so a slow shared machine does not cut the list short.
    """
    async with Collector(port, topic, **kw) as c:  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen, quiet_since = -1, loop.time()
        while loop.time() < deadline:
            if len(c.messages) != seen:
                seen, quiet_since = len(c.messages), loop.time()
            elif loop.time() - quiet_since >= settle_s and seen > 0:
                break
            await asyncio.sleep(0.02)
        return {m.topic: m.payload for m in c.messages if m.retain}


def make_result(
    stream: str, index: int, rng: np.random.Generator, hop: float = 1.0, length: float = 2.0
) -> WindowResult:
    """A plausible fast-path result with random (Dirichlet) scores: input data for sink tests."""
    p = rng.dirichlet(np.ones(len(EMOTIONS)) * 0.7)
    scores = {k: float(v) for k, v in zip(EMOTIONS, p, strict=True)}
    label = max(scores, key=scores.__getitem__)
    fp = rng.dirichlet(np.ones(len(EMOTIONS)))
    fscores = {k: float(v) for k, v in zip(EMOTIONS, fp, strict=True)}
    face = FaceResult(
        track=1,
        box=(int(rng.integers(0, 100)), 20, 220, 240),
        label=max(fscores, key=fscores.__getitem__),
        score=max(fscores.values()),
        scores=fscores,
    )
    voice = VoiceResult(
        speech=bool(index % 2), speech_ratio=float(rng.uniform()), pitch_hz=float(rng.uniform(90, 300))
    )
    start = index * hop
    return WindowResult(
        stream=stream,
        window=WindowRef(index, start, start + length),
        label=label,
        score=scores[label],
        scores=scores,
        faces=[face],
        voice=voice,
        modalities={"face": 0.7, "voice": 0.3},
        latency_ms={"fast_path": float(rng.uniform(5, 40))},
    )

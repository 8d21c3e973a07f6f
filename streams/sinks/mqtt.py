"""MQTT sink: publishes results on the affectstream topic contract, surviving broker outages.

Why it is built this way:

* The engine must never wait on the network, so every `publish_*` only serialises the payload and puts
  it in a bounded in-memory queue; one background task owns the connection and drains the queue.
* A message leaves the queue only once the broker acknowledged it (QoS 1 PUBACK; QoS 0 once written).
  When the connection drops, unacknowledged messages go back to the head of the queue in order and are
  re-sent after reconnecting, so results produced while the broker is away arrive after it returns.
* The queue is bounded: when full, the oldest message is dropped and counted (`dropped`). A newer
  retained `state` of a stream supersedes an older queued one (`coalesced`), since only the latest
  state matters to a subscriber.
* Reconnects use exponential backoff with jitter. Refused connections and refused credentials are
  reported once in one clear log line, counted, and retried; nothing raises into the engine.
* `<prefix>/available` is `online` (retained, birth) after every connect; the broker publishes the Last
  Will `offline` (retained) if the process dies, and `close()` publishes `offline` itself.
* Each process has its own client id (`affectstream-<node_id>-<random>` unless set): a broker drops the
  older session when a client id connects twice, so a shared id made two engines throw each other off
  forever. The sink also watches its own `available` topic: traffic there that is not the echo of its
  own birth comes from another process under the same node id, which is warned about once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import ssl
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

import aiomqtt
from affectstream.engine import config
from affectstream.engine.config import default_node_id, parse_mqtt_url, redact_url
from affectstream.engine.types import ReasoningResult, WindowResult
from affectstream.streams.contract import Topics, check_segment
from affectstream.streams.sinks.base import Sink

log = logging.getLogger("affectstream.mqtt")

_TRUE = {"1", "true", "yes", "on"}


@dataclass(slots=True)
class MqttTarget:
    """The resolved connection of one sink: broker address, credentials, TLS and the sink's tuning.

    Not a second settings model: `engine.config.MqttSettings` is where every MQTT knob is set and
    documented; `from_settings` turns it (plus the broker URL actually used) into this. Tests and
    library users may also build one from a URL (`from_url`) or keywords.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # CA bundle that signed the broker's certificate
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None
    tls_insecure: bool = False  # skip host name verification (self-signed test brokers only)
    node_id: str = field(default_factory=default_node_id)
    prefix: str | None = None  # default affectstream/<node_id>
    window_qos: int = 0  # QoS of the high-rate `window` topic (0 or 1); state/events/reasoning use 1
    client_id: str | None = None  # default affectstream-<node_id>-<random>: unique per process
    keepalive: int = 30
    queue_max: int = 10_000  # bounded offline queue; drop-oldest beyond this
    max_inflight: int = 32  # QoS 1 publishes awaiting PUBACK at once
    backoff_min_s: float = 0.5
    backoff_max_s: float = 15.0
    connect_timeout_s: float = 5.0
    publish_timeout_s: float = 10.0
    ha_discovery: bool = False  # publish Home Assistant MQTT discovery configs for each stream
    ha_prefix: str = "homeassistant"
    # Publish `<prefix>/available` (birth, will, offline). False for a sink that shares its node with
    # others (a Ray stream actor): one process owns the node's availability.
    availability: bool = True

    def __post_init__(self) -> None:
        check_segment(self.node_id, "node id")
        if self.window_qos not in (0, 1):
            raise ValueError(f"mqtt: window_qos must be 0 or 1, got {self.window_qos}")
        if not 0 < self.port < 65536:
            raise ValueError(f"mqtt: port must be 1-65535, got {self.port}")
        if self.queue_max < 1 or self.max_inflight < 1:
            raise ValueError("mqtt: queue_max and max_inflight must be >= 1")
        if self.backoff_min_s <= 0 or self.backoff_max_s < self.backoff_min_s:
            raise ValueError("mqtt: need 0 < backoff_min_s <= backoff_max_s")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mqtt: a client certificate needs both cert and key")

    @property
    def topics(self) -> Topics:
        return Topics.for_node(self.node_id, self.prefix)

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @classmethod
    def from_settings(cls, m: config.MqttSettings, url: str | None = None, **overrides: Any) -> MqttTarget:
        """The target for the `mqtt` settings section; `url` is the broker actually used (the embedded
        broker's when `m.url` is None). The section has already merged the URL's options and checked
        them, so here they only decide host, port and TLS."""
        u = parse_mqtt_url(url or m.url or "mqtt://127.0.0.1:1883")
        tls = u.tls or m.tls_ca is not None or m.tls_cert is not None
        kw: dict[str, Any] = {
            "host": u.host,
            "port": u.port,
            "tls": tls,
            "username": m.username if m.username is not None else u.username,
            "password": m.password if m.password is not None else u.password,
            "ca_file": str(m.tls_ca) if m.tls_ca else None,
            "cert_file": str(m.tls_cert) if m.tls_cert else None,
            "key_file": str(m.tls_key) if m.tls_key else None,
            "tls_insecure": m.tls_insecure,
            "node_id": m.node_id,
            "prefix": f"{m.prefix}/{m.node_id}",
            "window_qos": m.window_qos,
            "client_id": m.client_id,
            "keepalive": m.keepalive,
            "queue_max": m.offline_queue,
            "ha_discovery": m.ha_discovery,
        }
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttTarget:
        """Parse `mqtt[s]://[user[:pass]@]host[:port][?node=..&window_qos=..&ca=..&cert=..&key=..&insecure=1]`
        (the options of `engine.config.MQTT_URL_OPTIONS`). Keyword overrides win over the URL."""
        try:
            u = parse_mqtt_url(url)
        except ValueError as e:
            raise ValueError(f"mqtt: {e}") from None
        names = {f.name for f in fields(cls)}
        rename = {
            "tls_ca": "ca_file",
            "tls_cert": "cert_file",
            "tls_key": "key_file",
            "offline_queue": "queue_max",
        }
        kw: dict[str, Any] = {
            "host": u.host,
            "port": u.port,
            "tls": u.tls,
            "username": u.username,
            "password": u.password,
        }
        for k, v in u.options.items():
            name = rename.get(k, k)
            if name not in names:
                raise ValueError(f"mqtt: option {k!r} in {redact_url(url)!r} is not a sink option")
            kw[name] = v
        kw.update(overrides)
        return cls(**_coerce(kw))


def _coerce(kw: dict[str, Any]) -> dict[str, Any]:
    """URL query values are strings; convert them to the field types."""
    ints = {"port", "window_qos", "keepalive", "queue_max", "max_inflight"}
    floats = {"backoff_min_s", "backoff_max_s", "connect_timeout_s", "publish_timeout_s"}
    bools = {"tls", "tls_insecure", "ha_discovery"}
    out = dict(kw)
    for k, v in kw.items():
        if not isinstance(v, str):
            continue
        try:
            if k in ints:
                out[k] = int(v)
            elif k in floats:
                out[k] = float(v)
            elif k in bools:
                out[k] = v.lower() in _TRUE
        except ValueError:
            raise ValueError(f"mqtt: option {k}={v!r} is not a number") from None
    return out


def unique_client_id(node_id: str) -> str:
    """`affectstream-<node_id>-<6 hex>`: the broker disconnects an older session when a new one uses
    the same client id, so two processes sharing a node id (e.g. the default, the host name, on two
    containers of one host) would throw each other off forever. Topics stay under the node id."""
    return f"affectstream-{node_id}-{secrets.token_hex(3)}"


@dataclass(slots=True, eq=False)  # identity semantics: two equal payloads are still two messages
class _Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    superseded: bool = False  # a newer retained state of the same stream replaced it
    dropped: bool = False  # pushed out of the full queue (drop-oldest)
    done: bool = False  # acknowledged by the broker


def _json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _is_auth_error(exc: BaseException) -> bool:
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    text = str(exc).lower()
    return value in (4, 5, 134, 135) or "password" in text or "not authori" in text


class MqttSink(Sink):
    """The MQTT sink. `await start()`, `publish_*` freely, `await close()` to flush and go `offline`."""

    def __init__(self, settings: MqttTarget | str | None = None, **overrides: Any) -> None:
        if isinstance(settings, str):
            settings = MqttTarget.from_url(settings, **overrides)
        elif settings is None:
            settings = MqttTarget(**overrides)
        elif overrides:
            settings = replace(settings, **overrides)
        self.settings = settings
        self.client_id = settings.client_id or unique_client_id(settings.node_id)
        self._own_online = 0  # our own `online` publishes whose echo has not come back yet
        self.same_node_seen = 0  # times another process announced itself under our node id
        self._drops_reported = 0
        self.topics = settings.topics
        self._queue: deque[_Msg] = deque()
        self._inflight: list[_Msg] = []
        self._latest_state: dict[str, _Msg] = {}
        self._known_streams: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._closing = False
        self._abandon = False  # close() ran out of time: stop draining, just say `offline` and go
        self._pending = 0  # queued + in flight, not yet acknowledged (kept O(1) for wait_idle)
        self._task: asyncio.Task[None] | None = None
        self._counts = {
            "published": 0,
            "dropped": 0,
            "requeued": 0,  # sent but unacknowledged when the connection broke: re-sent after reconnect
            "coalesced": 0,
            "skipped_offline": 0,
            "invalid": 0,
            "connects": 0,
            "reconnects": 0,
            "connect_failures": 0,
            "auth_failures": 0,
            "disconnects": 0,
        }
        self.last_error: str | None = None
        self._last_logged: str | None = None

    # ---- Sink API -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the connection task and wait (at most `connect_timeout_s`) for the first attempt.

        Never raises for an unreachable broker: the outcome is logged and results are queued.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mqtt-sink")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self.settings.connect_timeout_s)

    async def publish_window(self, result: WindowResult) -> None:
        topic = self._stream_topic(result.stream, "window")
        if topic is not None:
            self._remember(result.stream)
            self._put(topic, result.to_payload, self.settings.window_qos, False)

    async def publish_state(self, stream: str, payload: dict[str, Any]) -> None:
        topic = self._stream_topic(stream, "state")
        if topic is None:
            return
        self._remember(stream)
        msg = self._put(topic, payload, 1, True, supersedes=self._latest_state.get(stream))
        if msg is not None:
            self._latest_state[stream] = msg

    async def publish_reasoning(self, result: ReasoningResult) -> None:
        topic = self._stream_topic(result.stream, "reasoning")
        if topic is not None:
            self._put(topic, result.to_payload, 1, False)

    async def publish_event(self, payload: dict[str, Any]) -> None:
        self._put(self.topics.events, payload, 1, False)

    async def publish_stats(self, payload: dict[str, Any]) -> None:
        # Stats describe "now": queuing stale ones for later delivery would only mislead.
        if not self._connected.is_set():
            self._counts["skipped_offline"] += 1
            return
        self._put(self.topics.stats, payload, 0, False)

    def stats(self) -> dict[str, Any]:
        return {
            **self._counts,
            "connected": self._connected.is_set(),
            "queued": self.pending,
            "queue_max": self.settings.queue_max,
            "last_error": self.last_error,
            "client_id": self.client_id,
            "same_node_seen": self.same_node_seen,
        }

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to `flush_timeout_s`), publish `offline`, disconnect."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        for stage, timeout in (("flush", flush_timeout_s), ("goodbye", 2.0)):
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
                break
            except asyncio.TimeoutError:
                if stage == "flush":  # still connected but slow: skip the backlog, publish `offline`
                    self._abandon = True
                    self._wake.set()
                    continue
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception as exc:  # the task never raises by design; be safe anyway
                log.warning("mqtt: sink task ended with %s", exc)
                break
        if self.pending:
            log.warning("mqtt: %d message(s) not delivered at shutdown (broker unreachable)", self.pending)
        self._task = None

    # ---- helpers for callers and tests ----------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def dropped(self) -> int:
        """Messages pushed out of the full offline queue (lost), for the exit summary."""
        return int(self._counts["dropped"])

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged (queued + in flight), superseded states excluded."""
        return self._pending

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once everything queued so far has been acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # ---- internals ------------------------------------------------------------------------------
    def _remember(self, stream: str) -> None:
        if stream not in self._known_streams:
            self._known_streams[stream] = None
            if self.settings.ha_discovery and self._connected.is_set():
                self._put_discovery(stream)

    def _stream_topic(self, stream: str, kind: str) -> str | None:
        try:
            return self.topics.stream(stream, kind)
        except ValueError as exc:
            self._counts["invalid"] += 1
            self._note(f"mqtt: dropped a {kind} message: {exc}")
            return None

    def _put(
        self, topic: str, payload: Any, qos: int, retain: bool, supersedes: _Msg | None = None
    ) -> _Msg | None:
        """Serialise and enqueue. `payload` may be a dict, bytes, or a callable returning either.

        `supersedes`: an older queued message this one replaces (retained state), skipped when sent.
        """
        try:
            if callable(payload):
                payload = payload()
            data = payload if isinstance(payload, bytes) else _json(payload)
        except Exception as exc:  # a broken result must not take the engine down with it
            self._counts["invalid"] += 1
            self._note(f"mqtt: dropped a message for {topic} that is not valid JSON ({exc})")
            return None
        old = supersedes
        if old is not None and not (old.done or old.superseded or old.dropped) and old not in self._inflight:
            old.superseded = True
            self._pending -= 1
            self._counts["coalesced"] += 1
        msg = _Msg(topic, data, qos, retain)
        q = self._queue
        while len(q) >= self.settings.queue_max:
            self._drop(q.popleft())
        q.append(msg)
        self._pending += 1
        self._wake.set()
        return msg

    def _put_discovery(self, stream: str) -> None:
        s, t = self.settings, self.topics
        uid = f"affectstream_{s.node_id}_{stream}".replace("-", "_")
        config = {
            "name": f"{stream} emotion",
            "unique_id": uid,
            "object_id": uid,
            "state_topic": t.stream(stream, "state"),
            "value_template": "{{ value_json.label }}",
            "json_attributes_topic": t.stream(stream, "state"),
            "availability_topic": t.available,
            "payload_available": "online",
            "payload_not_available": "offline",
            "icon": "mdi:emoticon-outline",
            "device": {"identifiers": [f"affectstream_{s.node_id}"], "name": f"affectstream {s.node_id}"},
        }
        self._put(f"{s.ha_prefix}/sensor/{uid}/config", config, 1, True)

    def _note(self, line: str, level: int = logging.WARNING) -> None:
        """Log a problem once per distinct message, so a long outage does not flood the log."""
        self.last_error = line
        if line != self._last_logged:
            log.log(level, "%s", line)
            self._last_logged = line

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        tls_params = None
        if s.tls:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file, cert_reqs=ssl.CERT_REQUIRED
            )
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            identifier=self.client_id,
            will=aiomqtt.Will(self.topics.available, b"offline", qos=1, retain=True)
            if s.availability
            else None,
            clean_session=True,
            keepalive=s.keepalive,
            timeout=s.connect_timeout_s,
            max_inflight_messages=s.max_inflight,
            tls_params=tls_params,
            tls_insecure=s.tls_insecure if s.tls else None,
        )

    async def _run(self) -> None:
        attempt = 0
        s = self.settings
        while True:
            try:
                client = self._client()
                async with client:
                    client.pending_calls_threshold = s.max_inflight + 16
                    self._on_connected()
                    attempt = 0
                    if s.availability:
                        # subscribe first: the echo of our own `online` tells it apart from another's
                        await client.subscribe(self.topics.available, qos=1)
                        self._own_online += 1
                        await client.publish(self.topics.available, b"online", qos=1, retain=True)
                    if s.ha_discovery:
                        for stream in self._known_streams:
                            self._put_discovery(stream)
                    if await self._serve(client):
                        if s.availability:
                            await client.publish(self.topics.available, b"offline", qos=1, retain=True)
                        return
            except asyncio.CancelledError:
                raise
            except aiomqtt.MqttError as exc:
                self._on_failure(exc)
            except Exception as exc:  # TLS file problems, paho surprises: never let the sink task die
                self._on_failure(exc)
            finally:
                self._requeue_inflight()
                if self._connected.is_set():
                    self._connected.clear()
                    self._counts["disconnects"] += 1
                self._first_attempt.set()
            if self._closing:
                return
            delay = min(s.backoff_max_s, s.backoff_min_s * 2**attempt) * random.uniform(0.8, 1.2)
            attempt = min(attempt + 1, 30)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wait_closing(), delay)

    async def _wait_closing(self) -> None:
        while not self._closing:
            self._wake.clear()
            await self._wake.wait()

    def _on_connected(self) -> None:
        self._counts["connects"] += 1
        if self._counts["connects"] > 1:
            self._counts["reconnects"] += 1
        if self.last_error is not None:
            log.info("mqtt: connected to %s after: %s", self.settings.address, self.last_error)
            self.last_error = None
        self._last_logged = None
        self._report_drops()
        self._connected.set()
        self._first_attempt.set()

    def _on_failure(self, exc: BaseException) -> None:
        s = self.settings
        if self._connected.is_set():
            self._note(f"mqtt: lost the connection to {s.address} ({exc}); reconnecting, results are queued")
            return
        self._counts["connect_failures"] += 1
        if _is_auth_error(exc):
            self._counts["auth_failures"] += 1
            who = f"user {s.username!r}" if s.username else "an anonymous client"
            self._note(
                f"mqtt: broker {s.address} refused the credentials of {who} ({exc}); check --mqtt user:password"
            )
        elif "refused" in str(exc).lower():
            self._note(
                f"mqtt: connection to {s.address} refused: no broker listening? retrying with backoff, results are queued"
            )
        else:
            self._note(
                f"mqtt: cannot connect to {s.address}: {exc}; retrying with backoff, results are queued"
            )

    def _requeue_inflight(self) -> None:
        """Put unacknowledged messages back at the head of the queue, in their original order."""
        back = [m for m in self._inflight if not m.done]
        self._inflight = []
        self._counts["requeued"] += len(back)
        self._queue.extendleft(reversed(back))
        while len(self._queue) > self.settings.queue_max:
            self._drop(self._queue.popleft())

    def _drop(self, m: _Msg) -> None:
        if not m.superseded:
            m.dropped = True
            self._counts["dropped"] += 1
            self._pending -= 1
            if self._counts["dropped"] == self._drops_reported + 1:
                log.warning(
                    "mqtt: offline queue full (%d messages): dropping the oldest results until the broker "
                    "is back; raise mqtt.offline_queue to keep more",
                    self.settings.queue_max,
                )

    def _report_drops(self) -> None:
        new = self._counts["dropped"] - self._drops_reported
        if new > 0:
            log.warning(
                "mqtt: %d message(s) were dropped while the broker was away (offline queue of %d was full)",
                new,
                self.settings.queue_max,
            )
            self._drops_reported = self._counts["dropped"]

    async def _serve(self, client: aiomqtt.Client) -> bool:
        """Drain the queue until closing (returns True) or the connection breaks (raises MqttError)."""
        watch = asyncio.create_task(self._watch(client))
        drain = asyncio.create_task(self._drain(client))
        try:
            await asyncio.wait({watch, drain}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (watch, drain):
                t.cancel()
            # Collect both outcomes, so no task exception is left unretrieved.
            outcomes = await asyncio.gather(watch, drain, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, Exception)]
        if errors:
            raise errors[0]
        if drain.cancelled():  # the watcher ended without an error: the connection was closed cleanly
            raise aiomqtt.MqttError("connection closed by the broker")
        return True

    async def _watch(self, client: aiomqtt.Client) -> None:
        # The message iterator raises MqttError as soon as the connection is lost, even while idle.
        async for message in client.messages:
            if not message.retain and str(message.topic) == self.topics.available:
                await self._on_available(client, bytes(message.payload))

    async def _on_available(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Live (not retained) traffic on our own `available` topic. We expect exactly the echo of each
        `online` we publish; anything else is another process under the same node id: an `online` when
        it connects, an `offline` (its will or its goodbye) when it leaves, which would mark this node
        offline while it runs. Warn once, and say `online` again: that restores our retained state and
        lets the other process see us (it warns too, once, and stops there)."""
        if payload == b"online" and self._own_online > 0:
            self._own_online -= 1
            return
        if self._closing:
            return
        self.same_node_seen += 1
        first = self.same_node_seen == 1
        if first:
            log.warning(
                "mqtt: another process publishes under the same node id %r on %s (its `available` said "
                "%r); subscribers cannot tell the two apart: give each engine its own --node-id",
                self.settings.node_id,
                self.settings.address,
                payload.decode(errors="replace"),
            )
        if first or payload != b"online":
            self._own_online += 1
            await client.publish(self.topics.available, b"online", qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> None:
        s = self.settings
        while True:
            while self._queue and not self._abandon:
                batch: list[_Msg] = []
                while self._queue and len(batch) < s.max_inflight:
                    m = self._queue.popleft()
                    if not m.superseded:
                        batch.append(m)
                self._inflight = batch
                if len(batch) == 1:  # the real-time case: no backlog, skip gather's task overhead
                    try:
                        await self._send(client, batch[0])
                        errors: list[BaseException] = []
                    except Exception as exc:
                        errors = [exc]
                else:
                    results = await asyncio.gather(
                        *(self._send(client, m) for m in batch), return_exceptions=True
                    )
                    errors = [r for r in results if isinstance(r, BaseException)]
                self._requeue_inflight()
                if errors:
                    raise (
                        errors[0]
                        if isinstance(errors[0], aiomqtt.MqttError)
                        else aiomqtt.MqttError(str(errors[0]))
                    )
            if self._closing:
                return
            self._wake.clear()
            if not self._queue:
                await self._wake.wait()

    async def _send(self, client: aiomqtt.Client, m: _Msg) -> None:
        await client.publish(
            m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=self.settings.publish_timeout_s
        )
        m.done = True
        self._pending -= 1
        self._counts["published"] += 1

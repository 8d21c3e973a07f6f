"""One stream on a Ray cluster: source → windower → analyzer pool → smoother → MQTT, in one actor.

The actor owns everything that is per-stream state (source reading, windower, smoother; the face
tracker and VAD state live in the stream's analyzer actor) and publishes to MQTT itself, with the same
topics and payloads as a single node: `<prefix>/<node_id>/<stream>/window|state` and `<prefix>/events`,
whichever machine it runs on. It does not publish `available` (one per node id: the coordinator's).

Restart semantics (see registry.py): the actor asks the registry where to resume; it commits each
window index before publishing it; a replacement

* skips every window up to the last committed index (a file read as fast as possible is re-read and
  its early windows are not analysed again; a paced file continues at the wall-clock position it would
  have reached, like a live broadcast; a live source's reopened clock is shifted so indices continue);
* seeds its smoother from the last retained `state` on the broker;
* publishes a `gap` event (which window indices are missing and why) and counts it in the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from affectstream.engine.types import VideoFrame, Window, WindowResult

log = logging.getLogger("affectstream.distributed")


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What the coordinator tells a stream actor: which source, and how it is paced."""

    stream_id: str
    kind: str  # file | url | camera | mic (streams/sources/factory.py)
    target: str
    device: int | str | None = None
    realtime: bool = False


@dataclass(frozen=True, slots=True)
class ActorConfig:
    """Everything a stream actor needs besides its stream (picklable, sent once)."""

    settings_json: str
    mqtt_url: str | None
    pool_name: str
    registry_name: str
    call_timeout_s: float = 60.0
    heartbeat_s: float = 1.0
    inflight: int = 2  # windows of this stream at the analyzer pool at once
    reasoners: tuple[str, ...] = ()  # names of the reasoner actors (slow path); empty: no reasoning


async def _ref(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())


async def read_retained(mqtt: Any, topic: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The retained JSON message on `topic` (None if there is none within `timeout` s)."""
    import aiomqtt

    tls = None
    if mqtt.tls:
        import ssl

        tls = aiomqtt.TLSParameters(
            ca_certs=mqtt.ca_file, certfile=mqtt.cert_file, keyfile=mqtt.key_file, cert_reqs=ssl.CERT_REQUIRED
        )

    async def first() -> dict[str, Any] | None:
        async with aiomqtt.Client(
            mqtt.host,
            mqtt.port,
            username=mqtt.username,
            password=mqtt.password,
            identifier=f"affectstream-resume-{secrets.token_hex(4)}",
            tls_params=tls,
        ) as c:
            await c.subscribe(topic, qos=1)
            async for m in c.messages:
                if m.retain:
                    return json.loads(bytes(m.payload))  # type: ignore[arg-type]
        return None

    try:
        return await asyncio.wait_for(first(), timeout)
    except (TimeoutError, asyncio.TimeoutError):
        return None
    except Exception as e:
        log.warning("could not read the retained %s: %s", topic, e)
    return None


class StreamActor:
    """Wrapped by `ray.remote` as an asyncio actor; `run()` returns when the stream ends."""

    def __init__(self, spec: StreamSpec, config: ActorConfig, epoch: int) -> None:
        from affectstream.engine.config import Settings

        self.spec = spec
        self.cfg = config
        self.epoch = epoch
        self.settings = Settings.model_validate_json(config.settings_json)
        self.stopping = False
        self.fenced = False
        self.c: dict[str, Any] = {
            "windows": 0,
            "windows_analyzed": 0,
            "windows_dropped": 0,
            "windows_failed": 0,
            "windows_skipped_resume": 0,
            "frames_in": 0,
        }
        self.latency: deque[float] = deque(maxlen=256)

    async def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    async def pid(self) -> int:
        return os.getpid()

    async def stop(self) -> None:
        self.stopping = True

    # ------------------------------------------------------------------------------------------ run
    async def run(self) -> dict[str, Any]:
        import ray
        from affectstream.engine.executor.ray_backend import RayExecutor, RayPoolOptions
        from affectstream.engine.smoother import Smoother, SmootherSettings
        from affectstream.streams.sinks.mqtt import MqttSink, MqttTarget
        from affectstream.streams.windower import Windower

        s = self.settings
        sid = self.spec.stream_id
        self.registry = ray.get_actor(self.cfg.registry_name)
        node = await self.node()
        resume = await _ref(self.registry.begin.remote(sid, self.epoch, node))
        if resume is None:
            return {"stream": sid, "status": "fenced"}
        self.resume = resume
        resumed = resume["restarts"] > 0
        self.executor = RayExecutor(
            None,
            options=RayPoolOptions(name=self.cfg.pool_name, call_timeout_s=self.cfg.call_timeout_s, actors=0),
            connect_ray=False,
        )
        await self.executor.start()
        self.reasoner = None
        if self.cfg.reasoners:
            from affectstream.engine.distributed.reasoner_actor import slot_for

            name = self.cfg.reasoners[slot_for(sid, len(self.cfg.reasoners))]
            with contextlib.suppress(ValueError):
                self.reasoner = ray.get_actor(name)
        self.sink = None
        mqtt_settings = None
        if self.cfg.mqtt_url is not None:
            m = s.mqtt
            mqtt_settings = MqttTarget.from_url(
                self.cfg.mqtt_url,
                node_id=m.node_id,
                prefix=f"{m.prefix}/{m.node_id}",
                window_qos=m.window_qos,
                queue_max=m.offline_queue,
                client_id=f"affectstream-{m.node_id}-{sid}-e{self.epoch}"[:64],
                availability=False,
                **({"username": m.username} if m.username else {}),
                **({"password": m.password} if m.password else {}),
                **(
                    {
                        "tls": True,
                        "ca_file": m.tls_ca and str(m.tls_ca),
                        "cert_file": m.tls_cert and str(m.tls_cert),
                        "key_file": m.tls_key and str(m.tls_key),
                    }
                    if (m.tls_ca or m.tls_cert)
                    else {}
                ),
            )
            self.sink = MqttSink(mqtt_settings)
            await self.sink.start()
        self.smoother = Smoother(SmootherSettings(tau_s=s.smoothing.tau, hysteresis=s.smoothing.hysteresis))
        self.restored_label: str | None = None
        self.restored_end: float | None = None
        if resumed and mqtt_settings is not None:
            state = await read_retained(mqtt_settings, mqtt_settings.topics.stream(sid, "state"))
            if state is not None and self.smoother.restore(state):
                self.restored_label = str(state.get("label") or "") or None
                self.restored_end = float(state["window"]["end"])
        self.gap_pending = resumed
        self.live = self.spec.kind != "file" or self.spec.realtime
        w = s.window
        self.windower = Windower(
            sid, length=w.length, hop=w.hop, n_frames=w.frames, max_skew=1.0 if self.live else 10.0
        )
        self.waiting: deque[Window] = deque()
        self.wake = asyncio.Event()
        self.source_done = False
        self.status, self.error = "running", None
        beat = asyncio.create_task(self._heartbeat())
        worker = asyncio.create_task(self._work())
        try:
            await self._read()
            self.source_done = True
            self.wake.set()
            await worker
        except Exception as e:
            self.status, self.error = "failed", f"{type(e).__name__}: {e}"
            log.exception("stream %s failed", sid)
        finally:
            self.source_done = True
            self.wake.set()
            if not worker.done():
                worker.cancel()
            with contextlib.suppress(BaseException):
                await worker
            if self.sink is not None and not self.fenced:
                for ev in self.smoother.finish(sid):
                    await self.sink.publish_event(ev)
                await self.sink.close()
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
            with contextlib.suppress(Exception):
                await self._beat_once()
            if self.status == "running":
                self.status = "finished"
            if self.fenced:
                self.status = "fenced"
            with contextlib.suppress(Exception):
                await _ref(self.registry.finish.remote(sid, self.epoch, self.status, self.error))
        return {"stream": sid, "status": self.status, "error": self.error, **self.c}

    # ------------------------------------------------------------------------------------ reading
    def _open(self) -> Any:
        from affectstream.streams.sources.factory import SourceSpec, open_source

        spec = SourceSpec(self.spec.kind, self.spec.target, self.spec.stream_id, self.spec.device)
        # a paced file is paced here, not in the source: a replacement can then skip ahead at once
        return open_source(spec, realtime=False)

    async def _read(self) -> None:
        src = await asyncio.to_thread(self._open)
        hop, length = self.settings.window.hop, self.settings.window.length
        committed = int(self.resume["committed"])
        wall_t0 = self.resume["wall_t0"]
        paced = self.spec.kind == "file" and self.spec.realtime
        skip_before = -1e18
        if paced and wall_t0 is not None:
            # continue where a broadcast would be now; keep one window of lead-in so it is complete
            skip_before = time.time() - wall_t0 - length
        self.index_offset = 0
        if self.spec.kind != "file" and committed >= 0:
            # a reopened live source restarts its clock: shift indices past the committed ones and
            # past the windows the outage cost
            missed = 0
            if self.resume["commit_wall"] is not None:
                missed = int(max(0.0, time.time() - self.resume["commit_wall"]) / hop)
            self.index_offset = committed + 1 + missed
        try:
            async for item in src:
                if self.stopping or self.fenced:
                    self.status = "stopped" if self.stopping else self.status
                    break
                ts = item.ts
                if paced:
                    if wall_t0 is None:
                        wall_t0 = await _ref(
                            self.registry.set_t0.remote(self.spec.stream_id, self.epoch, time.time() - ts)
                        )
                    if ts < skip_before:
                        continue
                    delay = wall_t0 + ts - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if isinstance(item, VideoFrame):
                    self.c["frames_in"] += 1
                for win in self.windower.push(item):
                    await self._enqueue(win)
            if not (self.stopping or self.fenced):
                for win in self.windower.flush():
                    await self._enqueue(win)
        finally:
            with contextlib.suppress(Exception):
                await src.close()

    async def _enqueue(self, win: Window) -> None:
        if self.index_offset:
            win.index += self.index_offset
        if win.index <= int(self.resume["committed"]):
            self.c["windows_skipped_resume"] += 1
            return
        self.c["windows"] += 1
        limit = self.settings.window.max_pending
        if self.live:
            while len(self.waiting) >= limit:
                self.waiting.popleft()
                self.c["windows_dropped"] += 1
        else:
            while len(self.waiting) >= limit and not self.fenced:
                await asyncio.sleep(0.005)
        self.waiting.append(win)
        self.wake.set()

    # ------------------------------------------------------------------------------- analysis/publish
    async def _work(self) -> None:
        inflight: deque[tuple[Window, asyncio.Future[WindowResult]]] = deque()
        while True:
            while self.waiting and len(inflight) < self.cfg.inflight and not self.fenced:
                w = self.waiting.popleft()
                inflight.append((w, self.executor.submit(w)))
            if inflight:
                w, fut = inflight.popleft()
                try:
                    res = await fut
                except Exception as e:
                    self.c["windows_failed"] += 1
                    log.warning("%s: window %d not analysed: %s", w.stream_id, w.index, e)
                    continue
                await self._publish(w, res)
                continue
            if self.source_done and not self.waiting:
                return
            self.wake.clear()
            await self.wake.wait()

    async def _publish(self, win: Window, res: WindowResult) -> None:
        sid = win.stream_id
        ok = await _ref(self.registry.commit.remote(sid, self.epoch, win.index))
        if not ok:
            if not self.fenced:
                log.warning("%s: epoch %d fenced off; this actor stops publishing", sid, self.epoch)
            self.fenced = True
            return
        res.window.index = win.index
        res.latency_ms["publish_delay"] = (time.monotonic() - win.closed_at) * 1000
        if self.gap_pending:
            self.gap_pending = False
            await self._publish_gap(win)
        self.c["windows_analyzed"] += 1
        self.latency.append(res.latency_ms["publish_delay"])
        if self.sink is not None:
            await self.sink.publish_window(res)
            upd = self.smoother.update(res)
            await self.sink.publish_state(sid, upd.state)
            for ev in upd.events:
                await self.sink.publish_event(ev)
        self.registry.ack.remote(sid, self.epoch, win.index)
        if self.reasoner is not None:  # fire and forget: reasoning never delays labels
            self.reasoner.offer.remote(res)

    async def _publish_gap(self, first: Window) -> None:
        """The `gap` event of a restart: windows after the last one surely delivered, up to this one."""
        acked = int(self.resume["acked"])
        committed = int(self.resume["committed"])
        lost = max(0, first.index - 1 - acked)
        await _ref(self.registry.gap.remote(first.stream_id, self.epoch, lost))
        if self.sink is None:
            return
        hop = self.settings.window.hop
        start = self.restored_end if self.restored_end is not None else (acked + 1) * hop
        ev = {
            "schema": "affectstream.events/1",
            "type": "gap",
            "stream": first.stream_id,
            "ts": round(time.time(), 3),
            "id": f"{time.time():.6f}-{secrets.token_hex(3)}",
            "label": self.restored_label or "unknown",
            "start": round(min(start, first.start), 3),
            "end": round(first.start, 3),
            "top_score": 0.0,
            "window": first.ref.to_dict(),
            "missing": {"from": acked + 1, "to": first.index - 1, "committed_unconfirmed": committed - acked},
            "windows_lost": lost,
            "reason": "stream actor restarted",
            "restarts": int(self.resume["restarts"]),
        }
        await self.sink.publish_event(ev)

    # ------------------------------------------------------------------------------------ heartbeat
    def counters(self) -> dict[str, Any]:
        lat = sorted(self.latency)
        row: dict[str, Any] = {**self.c, "epoch": self.epoch, "status": self.status}
        if lat:
            row["latency_ms"] = {
                "fast_path": {
                    "p50": round(lat[len(lat) // 2], 2),
                    "p95": round(lat[int(0.95 * (len(lat) - 1))], 2),
                }
            }
        row["executor"] = self.executor.stats()
        if self.sink is not None:
            row["sink"] = self.sink.stats()
        return row

    async def _beat_once(self) -> None:
        ok = await _ref(self.registry.beat.remote(self.spec.stream_id, self.epoch, self.counters()))
        if not ok:
            self.fenced = True
            self.wake.set()

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._beat_once()
            await asyncio.sleep(self.cfg.heartbeat_s)

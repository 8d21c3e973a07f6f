"""The driver of a cluster run: pool, registry, one actor per stream, and restarts when they die.

It runs where `affectstream run --ray` runs. It:

1. joins the cluster (or starts a local one), creates the ledger (registry) and the analyzer pool and
   waits until every analyzer has loaded its models;
2. places each stream actor on the alive node with the least stream load per CPU;
3. watches them: an actor whose `run()` fails (its process or node died) or whose heartbeat is older
   than `ray.heartbeat_timeout` is fenced off (new epoch), the pool is told to heal (replace analyzers
   that stopped answering), and the stream is started again on another node — the replacement resumes
   after the last committed window and publishes the gap;
4. owns the node id's `available` (birth/LWT) and publishes the node-wide `stats` (every stream's
   counters from its heartbeats, restarts, gaps and windows lost, placement, pool health).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from affectstream.engine.config import Settings
from affectstream.engine.distributed.placement import NodeInfo, alive_nodes, pick_node
from affectstream.engine.distributed.registry import Registry
from affectstream.engine.distributed.stream_actor import ActorConfig, StreamActor, StreamSpec
from affectstream.engine.executor.ray_backend import (
    NAMESPACE,
    RayExecutor,
    _here,
    connect,
    get_or_create_pool,
    pool_options,
)
from affectstream.streams.contract import stats_payload

log = logging.getLogger("affectstream.distributed")

SUSPECT_S = 60.0  # a node that lost an actor is avoided this long (or until it is declared dead)
START_GRACE_S = 90.0  # a new stream actor may take this long to send its first heartbeat
MAX_RESTARTS = 10  # per stream and run: a stream that keeps dying is given up (failed)


@dataclass
class _Running:
    spec: StreamSpec
    epoch: int
    actor: Any
    ref: Any
    node: str
    started: float = field(default_factory=time.monotonic)


@dataclass
class StreamOutcome:
    stream: str
    status: str  # finished | failed | stopped
    error: str | None
    restarts: int
    counters: dict[str, Any]


class ClusterRun:
    """Runs `specs` as stream actors on the cluster at `address` (None: a local Ray on 127.0.0.1)."""

    def __init__(
        self,
        settings: Settings,
        specs: list[StreamSpec],
        analyzer_factory: Callable[[], Any],
        *,
        address: str | None = None,
        mqtt_url: str | None = None,
        node_sink: Any = None,
        run_id: str | None = None,
        on_restart: Callable[[str, str, str], None] | None = None,
        profile_dir: str | None = None,
    ) -> None:
        self.settings = settings
        self.specs = specs
        self.factory = analyzer_factory
        self.address = address if address is not None else settings.ray.address
        self.mqtt_url = mqtt_url
        self.node_sink = node_sink  # the node id's MQTT sink: `available` + `stats`
        self.run_id = run_id or f"{int(time.time() * 1000):x}"
        self.on_restart = on_restart
        self.profile_dir = profile_dir  # for the reasoners; None: each node's $AFFECTSTREAM_HOME
        self.pool_name = f"affectstream-analyzers-{self.run_id}"
        self.registry_name = f"affectstream-registry-{self.run_id}"
        self.running: dict[str, _Running] = {}
        self.outcomes: dict[str, StreamOutcome] = {}
        self.suspect: dict[str, float] = {}
        self.restart_log: list[dict[str, Any]] = []
        self.executor: RayExecutor | None = None
        self._stopping = False
        self._started = time.monotonic()
        self.pool: Any = None
        self.registry: Any = None
        self.reasoners: list[Any] = []
        self.reasoner_names: list[str] = []

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> dict[str, StreamOutcome]:
        import ray

        connect(self.address)  # in the main thread: Ray installs its signal handlers there
        self.registry = (
            ray.remote(Registry)
            .options(
                name=self.registry_name,
                namespace=NAMESPACE,
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=_here(),
            )
            .remote()
        )
        opts = pool_options(self.settings)
        opts = type(opts)(**{**_asdict(opts), "name": self.pool_name})
        self.pool = await asyncio.to_thread(get_or_create_pool, self.factory, opts)
        self.executor = RayExecutor(None, options=opts, connect_ray=False)
        await self.executor.start()  # every analyzer actor has loaded its models
        await self._start_reasoners()
        if self.node_sink is not None:
            await self.node_sink.start()
        stats_task = asyncio.create_task(self._stats_loop())
        try:
            for spec in self.specs:
                await self._launch(spec, restart=False)
            await self._watch()
        finally:
            stats_task.cancel()
            with contextlib.suppress(BaseException):
                await stats_task
            if self._stopping:
                for r in list(self.running.values()):
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(_ref(r.actor.stop.remote()), 5)
                await self._watch()
            for r in self.reasoners:  # generations in progress finish and are published
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_ref(r.drain.remote()), 60)
            if self.node_sink is not None:
                with contextlib.suppress(Exception):
                    await self.node_sink.publish_stats(await self.stats_payload())
                await self.node_sink.close()
            for h in (self.pool, self.registry, *self.reasoners):
                with contextlib.suppress(Exception):
                    ray.kill(h, no_restart=True)
        return self.outcomes

    async def _start_reasoners(self) -> None:
        """The slow path's actors (`ray.reasoners`, 1 CPU each), when reasoning is on for `lite`; a
        reasoner that cannot load its LLM is reported once and reasoning goes without it."""
        import ray
        from affectstream.engine.distributed.reasoner_actor import ReasonerActor

        s = self.settings
        if not (s.reasoning.enabled and s.profile == "lite" and s.ray.reasoners > 0):
            return
        names = [f"affectstream-reasoner-{self.run_id}-{i}" for i in range(s.ray.reasoners)]
        # one CPU each when the cluster has it left, else share (a small cluster must not wait forever)
        cpus = 1 if float(ray.available_resources().get("CPU", 0.0)) >= s.ray.reasoners else 0
        handles = [
            ray.remote(ReasonerActor)
            .options(name=n, namespace=NAMESPACE, num_cpus=cpus, max_restarts=0, scheduling_strategy="SPREAD")
            .remote(s.model_dump_json(), self.mqtt_url, i, self.profile_dir)
            for i, n in enumerate(names)
        ]
        infos = await asyncio.gather(
            *(asyncio.wait_for(_ref(h.ready.remote()), 300) for h in handles), return_exceptions=True
        )
        for h, n, info in zip(handles, names, infos, strict=True):
            err = info if isinstance(info, BaseException) else info.get("error")
            if err:
                log.warning("reasoner %s unavailable, reasoning goes without it: %s", n, err)
                with contextlib.suppress(Exception):
                    ray.kill(h, no_restart=True)
                continue
            self.reasoners.append(h)
            self.reasoner_names.append(n)

    # ------------------------------------------------------------------------------------ placement
    def _nodes(self) -> list[NodeInfo]:
        import ray

        return alive_nodes(ray.nodes())

    async def _launch(self, spec: StreamSpec, *, restart: bool, avoid: str | None = None) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        now = time.monotonic()
        self.suspect = {n: t for n, t in self.suspect.items() if now - t < SUSPECT_S}
        nodes = await asyncio.to_thread(self._nodes)
        load: dict[str, int] = {}
        for r in self.running.values():
            load[r.node] = load.get(r.node, 0) + 1
        node = pick_node(nodes, load, set(self.suspect), avoid)
        epoch = await _ref(self.registry.fence.remote(spec.stream_id, restart))
        cfg = ActorConfig(
            settings_json=self.settings.model_dump_json(),
            mqtt_url=self.mqtt_url,
            pool_name=self.pool_name,
            registry_name=self.registry_name,
            call_timeout_s=self.settings.ray.call_timeout,
            reasoners=tuple(self.reasoner_names),
        )
        strategy: Any = "DEFAULT"
        if node is not None:
            # strict: a soft affinity was seen to be ignored, putting streams where placement did not;
            # if the node dies before the actor starts, its creation fails and the stream is restarted
            strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        actor = (
            ray.remote(StreamActor)
            .options(num_cpus=0, max_restarts=0, max_concurrency=64, scheduling_strategy=strategy)
            .remote(spec, cfg, epoch)
        )
        ref = actor.run.remote()
        self.running[spec.stream_id] = _Running(spec, epoch, actor, ref, node.node_id if node else "?")
        if restart:
            log.warning(
                "stream %s restarted (epoch %d) on node %s", spec.stream_id, epoch, node and node.node_id
            )

    # ------------------------------------------------------------------------------------ watching
    async def _watch(self) -> None:
        import ray
        from ray.exceptions import RayActorError, RayError

        hb_timeout = self.settings.ray.heartbeat_timeout
        while self.running:
            refs = {r.ref: sid for sid, r in self.running.items()}
            done, _ = await asyncio.to_thread(ray.wait, list(refs), num_returns=1, timeout=0.5)
            lost: list[tuple[_Running, str]] = []
            for ref in done:
                sid = refs[ref]
                r = self.running[sid]
                try:
                    out = await _ref(ref)
                except RayActorError as e:  # its process or its node died
                    lost.append((r, f"actor lost: {type(e).__name__}"))
                    continue
                except RayError as e:  # run() itself raised: a bug, not a node failure
                    out = {"status": "failed", "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
                del self.running[sid]
                snap = await _ref(self.registry.snapshot.remote())
                rec = snap.get(sid, {})
                self.outcomes[sid] = StreamOutcome(
                    sid, out.get("status", "finished"), out.get("error"), int(rec.get("restarts", 0)), out
                )
            if self.running:
                snap = await _ref(self.registry.snapshot.remote())
                for sid, r in list(self.running.items()):
                    rec = snap.get(sid)
                    if rec is None or rec["epoch"] != r.epoch or any(x is r for x, _ in lost):
                        continue
                    limit = hb_timeout if rec["beats"] > 0 else START_GRACE_S
                    if rec["beat_age_s"] > limit:
                        lost.append((r, f"no heartbeat for {rec['beat_age_s']:.1f} s"))
            if lost:
                await self._restart_all(lost)

    async def _restart_all(self, lost: list[tuple[_Running, str]]) -> None:
        """Fence off and restart `lost` streams elsewhere. The pool is told to heal first (analyzers on
        a vanished node would otherwise be found out one call timeout later); the replacements wait for
        that inside the pool, not here."""
        import ray

        for r, _ in lost:
            self.suspect[r.node] = time.monotonic()
        with contextlib.suppress(Exception):
            self.pool.heal.remote()
        for r, why in lost:
            sid = r.spec.stream_id
            with contextlib.suppress(Exception):
                ray.kill(r.actor, no_restart=True)
            restarts = sum(1 for x in self.restart_log if x["stream"] == sid)
            if self._stopping or restarts >= MAX_RESTARTS:
                del self.running[sid]
                status = "stopped" if self._stopping else "failed"
                self.outcomes[sid] = StreamOutcome(sid, status, why, restarts, {})
                continue
            self.restart_log.append({"stream": sid, "from_node": r.node, "why": why, "t": time.time()})
            if self.on_restart is not None:
                self.on_restart(sid, r.node, why)
            await self._launch(r.spec, restart=True, avoid=r.node)

    # ------------------------------------------------------------------------------------ stats
    async def stats_payload(self) -> dict[str, Any]:
        snap = await _ref(self.registry.snapshot.remote())
        streams: dict[str, Any] = {}
        for sid, rec in snap.items():
            c = dict(rec.get("counters") or {})
            c.pop("executor", None)
            sink = c.pop("sink", None)
            row = {
                **c,
                "status": rec["status"],
                "error": rec["error"],
                "node": rec["node"],
                "epoch": rec["epoch"],
                "restarts": rec["restarts"],
                "gaps": rec["gaps"],
                "windows_lost": rec["windows_lost"],
                "last_window": rec["committed"],
            }
            if sink is not None:
                row["mqtt"] = {k: sink.get(k) for k in ("published", "dropped", "queued", "connected")}
            streams[sid] = row
        pool = {}
        with contextlib.suppress(Exception):
            pool = await asyncio.wait_for(_ref(self.pool.stats.remote()), 5)
        reasoning: list[Any] = []
        for r in self.reasoners:
            try:
                reasoning.append(await asyncio.wait_for(_ref(r.stats.remote()), 5))
            except Exception as e:
                reasoning.append({"error": type(e).__name__})
        cluster = {
            "nodes": len(await asyncio.to_thread(self._nodes)),
            "placement": {sid: r.node for sid, r in self.running.items()},
            "restarts": len(self.restart_log),
            "gaps": sum(int(r["gaps"]) for r in snap.values()),
            "windows_lost": sum(int(r["windows_lost"]) for r in snap.values()),
            "analyzers": pool,
            "reasoners": reasoning,
        }
        return stats_payload(
            self.settings.mqtt.node_id,
            streams,
            {"MqttSink": self.node_sink.stats()} if self.node_sink is not None else {},
            time.monotonic() - self._started,
            profile=self.settings.profile,
            cluster=cluster,
        )

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.mqtt.stats_interval)
            if self.node_sink is not None:
                with contextlib.suppress(Exception):
                    await self.node_sink.publish_stats(await self.stats_payload())


async def _ref(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())


def _asdict(o: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(o)

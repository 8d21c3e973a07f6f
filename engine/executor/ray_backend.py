"""The Ray backend of the analysis executor: a pool of analyzer actors anywhere on a Ray cluster.

Why it is built this way:

* **Models load once per actor.** Each analyzer actor builds its analyzer from a picklable *factory*
  (profile name + settings) when it starts; the analyzer itself is never pickled and never moves.
* **Cross-stream batching inside the actor.** An analyzer actor is an asyncio actor whose `analyze`
  call only queues the window; one loop takes everything queued (windows of every stream that uses
  this actor, from any node) and runs one `analyze_batch` in a thread. Callers stay one-window-at-a-time.
* **A stream sticks to one actor.** The analyzer keeps per-stream state (face tracker ids, streaming
  VAD, the per-frame cache); routing all of a stream's windows to the same actor keeps that state
  right and keeps per-stream results in order. Streams are spread over actors by count.
* **One supervisor for the pool.** A small named pool actor owns the analyzer actors, so stream
  actors on any node share the same analyzers, and a dead analyzer is replaced once (generation
  numbers), not once per caller. A call that fails because its actor died, or that does not answer
  within `call_timeout_s` (an actor on a node that vanished can take the cluster's health check to be
  declared dead), replaces the actor and is retried once on the replacement.
* **GPUs when they exist.** With GPUs in the cluster, `gpu_fraction` of a GPU is requested per GPU
  actor (several small-model actors share one GPU); CPU actors are placed elsewhere with `SPREAD`.

`ray` is imported only inside functions of this module, so nothing imports it unless `--ray` is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from affectstream.engine.executor.base import set_analyze_ms
from affectstream.engine.types import Window, WindowResult

log = logging.getLogger("affectstream.ray")

NAMESPACE = "affectstream"
POOL_NAME = "affectstream-analyzers"


@dataclass(frozen=True, slots=True)
class RayPoolOptions:
    """How many analyzer actors, where, and how they batch."""

    actors: int = 2  # CPU analyzer actors
    cpus_per_actor: float = 1.0  # Ray CPU resource each CPU actor reserves
    gpu_fraction: float = 0.25  # num_gpus per GPU actor: four small-model actors share one GPU
    gpu_actors: int | None = None  # default: as many as the cluster's GPUs hold at gpu_fraction each
    max_batch: int = 16  # windows per analyze_batch call inside one actor
    call_timeout_s: float = 60.0  # no answer by then: the actor is treated as dead and replaced
    name: str = POOL_NAME

    def __post_init__(self) -> None:
        if self.actors < 0 or self.max_batch < 1 or self.call_timeout_s <= 0:
            raise ValueError("ray pool: need actors >= 0, max_batch >= 1, call_timeout_s > 0")
        if not 0 < self.gpu_fraction <= 1:
            raise ValueError(f"ray pool: gpu_fraction must be in (0, 1], got {self.gpu_fraction}")


def pool_options(settings: Any = None) -> RayPoolOptions:
    """Pool options from the `ray` and `executor` settings sections (defaults when absent)."""
    if settings is None:
        return RayPoolOptions()
    kw: dict[str, Any] = {"max_batch": settings.executor.max_batch}
    r = getattr(settings, "ray", None)
    if r is not None:
        kw.update(
            actors=r.actors,
            cpus_per_actor=r.cpus_per_actor,
            gpu_fraction=r.gpu_fraction,
            gpu_actors=r.gpu_actors,
            call_timeout_s=r.call_timeout,
        )
    return RayPoolOptions(**kw)


def is_loopback(address: str | None) -> bool:
    """A local Ray (None) or a cluster address on 127.0.0.1 / localhost."""
    if address is None:
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _keep_loopback() -> None:
    """Make this process's Ray use 127.0.0.1 as its own address.

    Ray replaces a loopback address (the cluster's, or `_node_ip_address`) with the host's outward IP
    unless multi-node clusters are "disabled" for the process; then a loopback-only cluster (every
    server on 127.0.0.1, as in the tests) is unreachable and a local Ray would listen beyond loopback.
    The switch Ray reads is `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`; for a driver it only changes this
    address choice (raylets and workers get their address from their node).
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:  # read once at import: set it on the module too
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at `address` ("auto" = the one started on this machine with `ray start`),
    or start a local one-node Ray on 127.0.0.1 when `address` is None. Idempotent; usage stats off."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if is_loopback(address):
        _keep_loopback()
    import ray

    if ray.is_initialized():
        return
    common: dict[str, Any] = {"namespace": NAMESPACE, "configure_logging": False, "log_to_driver": False}
    if address is None:
        ray.init(include_dashboard=False, num_cpus=num_cpus, _node_ip_address="127.0.0.1", **common)
    elif is_loopback(address):
        ray.init(address=address, _node_ip_address="127.0.0.1", **common)
    else:
        ray.init(address=address, **common)


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


# ---------------------------------------------------------------------------------------------- actors
class AnalyzerActor:
    """One analyzer, loaded once; batches whatever windows are queued (wrapped by `ray.remote`)."""

    def __init__(self, factory: Callable[[], Any], max_batch: int = 16) -> None:
        t0 = time.perf_counter()
        self.analyzer = factory()
        self.load_s = time.perf_counter() - t0
        self.max_batch = max_batch
        self._queue: list[tuple[Window, asyncio.Future[WindowResult]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.windows = 0
        self.batches = 0
        self.largest_batch = 0
        self.failed = 0

    async def analyze(self, window: Window) -> WindowResult:
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._loop())
        fut: asyncio.Future[WindowResult] = asyncio.get_running_loop().create_future()
        self._queue.append((window, fut))
        assert self._wake is not None
        self._wake.set()
        return await fut

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            t0 = time.perf_counter()
            try:
                results = await asyncio.to_thread(self.analyzer.analyze_batch, [w for w, _ in batch])
            except Exception as e:  # the callers see the analyzer's own error
                self.failed += len(batch)
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            set_analyze_ms(results, time.perf_counter() - t0)
            self.windows += len(batch)
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            for (_, f), r in zip(batch, results, strict=True):
                if not f.done():
                    f.set_result(r)

    async def info(self) -> dict[str, Any]:
        import ray

        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "load_s": round(self.load_s, 3),
            "windows": self.windows,
            "batches": self.batches,
            "largest_batch": self.largest_batch,
            "failed": self.failed,
            "queued": len(self._queue),
        }


class AnalyzerPool:
    """Supervisor of the analyzer actors (a named actor, wrapped by `ray.remote`)."""

    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        import ray

        self.factory = factory
        self.opts = RayPoolOptions(**options)
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        n_gpu = self.opts.gpu_actors
        if n_gpu is None:
            n_gpu = int(gpus / self.opts.gpu_fraction) if gpus else 0
        self.slots: list[dict[str, Any]] = []
        for gpu in [True] * n_gpu + [False] * self.opts.actors:
            self.slots.append({"gen": 0, "gpu": gpu, "handle": self._spawn(gpu), "spawned": time.monotonic()})
        if not self.slots:
            raise ValueError("ray pool: no analyzer actors configured (actors=0 and no GPUs)")
        self.replaced = 0
        self.assigned: dict[str, int] = {}  # stream -> slot, for every caller (bounded below)

    def assign(self, stream: str) -> int:
        """The analyzer slot for `stream`: its slot if it has one, else the slot with the fewest streams.
        Kept here, not per caller, so stream actors on many nodes spread over all analyzers."""
        slot = self.assigned.get(stream)
        if slot is None:
            counts = [0] * len(self.slots)
            for s in self.assigned.values():
                counts[s] += 1
            slot = min(range(len(self.slots)), key=lambda i: (counts[i], i))
            if len(self.assigned) >= 100_000:  # forget the oldest assignment
                self.assigned.pop(next(iter(self.assigned)))
            self.assigned[stream] = slot
        return slot

    def _spawn(self, gpu: bool, node: str | None = None) -> Any:
        import ray

        strategy: Any = "SPREAD"
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy = NodeAffinitySchedulingStrategy(node, soft=True)
        opts: dict[str, Any] = {"max_restarts": 0, "scheduling_strategy": strategy}
        if gpu:
            opts.update(num_cpus=0, num_gpus=self.opts.gpu_fraction)
        else:
            opts["num_cpus"] = self.opts.cpus_per_actor
        return ray.remote(AnalyzerActor).options(**opts).remote(self.factory, self.opts.max_batch)

    def handles(self) -> list[tuple[int, Any]]:
        return [(s["gen"], s["handle"]) for s in self.slots]

    def replace(self, slot: int, gen: int, node: str | None = None) -> tuple[int, Any]:
        """Replace slot `slot` if it is still at generation `gen` (the first caller to notice the death
        does it; later callers get the replacement). `node`: where to put it (default: SPREAD)."""
        import ray

        s = self.slots[slot]
        if s["gen"] == gen:
            with contextlib.suppress(Exception):
                ray.kill(s["handle"], no_restart=True)
            s["handle"] = self._spawn(s["gpu"], node)
            s["spawned"], s["ready"] = time.monotonic(), False
            s["gen"] = gen + 1
            self.replaced += 1
            log.warning("analyzer actor %d replaced (generation %d)", slot, gen + 1)
        return s["gen"], s["handle"]

    def heal(self, timeout_s: float = 3.0, load_grace_s: float = 120.0) -> int:
        """Replace every analyzer that is dead, or that answered before and now does not answer within
        `timeout_s` (its node vanished; the cluster may take a while to declare it dead). Replacements
        go to a node whose analyzers answered. Returns how many were replaced."""
        import ray

        refs = [s["handle"].info.remote() for s in self.slots]
        bad: list[int] = []
        healthy: list[str] = []
        for i, ref in enumerate(refs):
            s = self.slots[i]
            try:
                info = ray.get(ref, timeout=timeout_s)
            except ray.exceptions.GetTimeoutError:
                if s.get("ready") or time.monotonic() - s.get("spawned", 0.0) > load_grace_s:
                    bad.append(i)
                continue
            except Exception:
                bad.append(i)
                continue
            s["ready"], s["node"] = True, info["node"]
            healthy.append(info["node"])
        for k, i in enumerate(bad):
            self.replace(i, self.slots[i]["gen"], healthy[k % len(healthy)] if healthy else None)
        return len(bad)

    def stats(self) -> dict[str, Any]:
        return {
            "actors": len(self.slots),
            "gpu_actors": sum(1 for s in self.slots if s["gpu"]),
            "replaced": self.replaced,
            "generations": [s["gen"] for s in self.slots],
            "streams": [sum(1 for v in self.assigned.values() if v == i) for i in range(len(self.slots))],
        }


def get_or_create_pool(factory: Callable[[], Any], options: RayPoolOptions) -> Any:
    """The named pool actor: created by the first caller, found by every later one (stream actors)."""
    return _pool(factory, options)[0]


def _pool(factory: Callable[[], Any], options: RayPoolOptions) -> tuple[Any, bool]:
    """(pool handle, whether this call created it)."""
    import ray

    with contextlib.suppress(ValueError):
        return ray.get_actor(options.name, namespace=NAMESPACE), False
    return (
        ray.remote(AnalyzerPool)
        .options(
            name=options.name,
            namespace=NAMESPACE,
            num_cpus=0,
            max_restarts=0,
            # the supervisor stays where the driver is: if that node dies the run is over anyway
            scheduling_strategy=_here(),
        )
        .remote(factory, asdict(options))
    ), True


def _here() -> Any:
    """On this process's node, strictly: the supervisors (pool, ledger) share the coordinator's fate.
    (A soft affinity was seen to land them on another node, which then took the ledger down with it.)"""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


async def _await_ref(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())


# ---------------------------------------------------------------------------------------------- executor
class RayExecutor:
    """The `Executor` of the capacity issue on a Ray cluster (see engine/executor/base.py).

    `submit` returns a future per window; results of one stream complete in submission order. Windows
    go to the stream's analyzer actor; an actor that dies (or stops answering) is replaced through the
    pool and the window is retried once; a second failure fails that window's future.
    """

    name = "ray"

    def __init__(
        self,
        analyzer_factory: Callable[[], Any] | None = None,
        *,
        address: str | None = None,
        options: RayPoolOptions | None = None,
        settings: Any = None,
        connect_ray: bool = True,
    ) -> None:
        self.factory = analyzer_factory
        self.address = address
        if options is None:
            options = pool_options(settings)
            if address is None and settings is not None and getattr(settings, "ray", None) is not None:
                self.address = settings.ray.address
        self.options = options
        self.connect_ray = connect_ray
        self._pool: Any = None
        self._owns_pool = False
        self._slots: list[tuple[int, Any]] = []
        self._assign: dict[str, int] = {}
        self._asking: dict[str, asyncio.Future[Any]] = {}
        self._tail: dict[str, asyncio.Future[WindowResult]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # calls in flight (kept referenced)
        self._replacing: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self.in_flight = 0
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.replaced = 0
        self.call_ms_total = 0.0

    async def start(self) -> None:
        """Connect, find or create the pool, and wait until every analyzer actor has loaded its models
        (idempotent: the assembly and the pipeline may both call it)."""
        if self._pool is not None:
            return
        if self.connect_ray:
            await asyncio.to_thread(connect, self.address)
        import ray

        if self.factory is None:
            self._pool = await asyncio.to_thread(ray.get_actor, self.options.name, NAMESPACE)
        else:
            need = self.options.actors * self.options.cpus_per_actor
            have = float(ray.cluster_resources().get("CPU", 0.0))
            if need > have:  # the actors would wait for CPUs forever
                raise ValueError(
                    f"ray: {self.options.actors} analyzer actors need {need:g} CPUs, the cluster has {have:g} "
                    "(set ray.actors / ray.cpus_per_actor, e.g. AFFECTSTREAM_RAY__ACTORS=1)"
                )
            self._pool, self._owns_pool = await asyncio.to_thread(_pool, self.factory, self.options)
        self._slots = list(await _await_ref(self._pool.handles.remote()))
        await asyncio.gather(*(_await_ref(h.info.remote()) for _, h in self._slots))

    @property
    def capacity(self) -> int:
        return max(1, len(self._slots)) * self.options.max_batch

    async def _slot_for(self, stream: str) -> int:
        """The stream's analyzer slot, asked once from the pool (which balances every caller's streams)."""
        slot = self._assign.get(stream)
        if slot is not None:
            return slot
        # one question per stream; windows waiting for the answer resume in submission order
        pending = self._asking.get(stream)
        if pending is None:
            pending = self._asking[stream] = asyncio.ensure_future(
                _await_ref(self._pool.assign.remote(stream))
            )
        slot = int(await pending)
        self._assign[stream] = slot
        self._asking.pop(stream, None)
        return slot

    def submit(self, window: Window) -> asyncio.Future[WindowResult]:
        if self._pool is None:
            raise RuntimeError("RayExecutor.submit before start()")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[WindowResult] = loop.create_future()
        prev = self._tail.get(window.stream_id)
        self._tail[window.stream_id] = fut
        self.in_flight += 1
        task = loop.create_task(self._run(window, prev, fut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fut

    async def _run(
        self, window: Window, prev: asyncio.Future[WindowResult] | None, fut: asyncio.Future[WindowResult]
    ) -> None:
        result: WindowResult | None = None
        error: BaseException | None = None
        t0 = time.perf_counter()
        try:
            result = await self._call(window)
        except Exception as e:
            error = e
        if prev is not None and not prev.done():  # per-stream order: never overtake the previous window
            with contextlib.suppress(BaseException):
                await asyncio.shield(prev)
        self.in_flight -= 1
        if self._tail.get(window.stream_id) is fut:
            del self._tail[window.stream_id]
        if fut.done():
            return
        if error is not None:
            self.failed += 1
            fut.set_exception(error)
        else:
            assert result is not None
            self.completed += 1
            ms = (time.perf_counter() - t0) * 1000
            self.call_ms_total += ms
            result.latency_ms["ray_call"] = ms
            fut.set_result(result)

    async def _call(self, window: Window) -> WindowResult:
        from ray.exceptions import RayActorError

        slot = await self._slot_for(window.stream_id)
        for attempt in (0, 1):
            gen, handle = self._slots[slot]
            try:
                return await asyncio.wait_for(
                    _await_ref(handle.analyze.remote(window)), self.options.call_timeout_s
                )
            except (RayActorError, asyncio.TimeoutError) as e:
                if attempt == 1:
                    raise RuntimeError(f"analyzer actor failed twice on window {window.index}: {e}") from e
                log.warning("analyzer actor %d gen %d lost (%s); retrying window once", slot, gen, e)
                self.retried += 1
                await self._replace(slot, gen)
        raise AssertionError("unreachable")

    async def _replace(self, slot: int, gen: int) -> None:
        """Ask the pool for slot's replacement, once per generation even with many windows in flight."""
        pending = self._replacing.get(slot)
        if pending is None or pending.done():
            if self._slots[slot][0] != gen:
                return  # someone here already moved this slot on
            pending = asyncio.ensure_future(_await_ref(self._pool.replace.remote(slot, gen)))
            self._replacing[slot] = pending
            new = await pending
            if new[0] > self._slots[slot][0]:
                self.replaced += 1
                self._slots[slot] = new
            return
        await pending

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "in_flight": self.in_flight,
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
            "replaced": self.replaced,
            "actors": len(self._slots),
            "generations": [g for g, _ in self._slots],
            "streams_per_actor": [
                sum(1 for s in self._assign.values() if s == i) for i in range(len(self._slots))
            ],
            "call_ms_mean": round(self.call_ms_total / self.completed, 2) if self.completed else None,
        }

    async def actor_info(self) -> list[dict[str, Any]]:
        """Per-actor counters (pid, node, windows, batches); an unreachable actor reports its error."""
        out = []
        for gen, h in self._slots:
            try:
                info = await asyncio.wait_for(_await_ref(h.info.remote()), 10)
            except Exception as e:
                info = {"error": f"{type(e).__name__}"}
            out.append({"generation": gen, **info})
        return out

    async def close(self) -> None:
        """Stop the pool (and with it its analyzer actors) if this executor created it; an executor that
        only joined a pool (a stream actor's) leaves it to its creator."""
        pool, self._pool = self._pool, None
        if pool is not None and self._owns_pool:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(pool, no_restart=True)

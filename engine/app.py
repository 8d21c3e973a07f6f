"""Application assembly: the one place that wires a configured engine together, for `run` and `serve`.

Both commands need the same parts — a prepared profile, the analyzer, the sinks (JSONL, MQTT with an
embedded broker when no URL is given), the smoother, the reasoning slow path and the `Pipeline` that
drives them — and used to build them twice. `build_app` builds them once; `run_sources` and `serve` only
add what differs (sources from the command line, or a WebRTC server that adds callers as streams).

This module sits above the pipeline and every component and below the CLI: it may import anything
except `affectstream.engine.cli`, and nothing but the CLI imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from affectstream.engine.config import MqttSettings, Settings
from affectstream.engine.errors import UsageError
from affectstream.engine.pipeline import Pipeline
from affectstream.engine.runtimes.base import ModelFileError
from affectstream.engine.types import WindowResult

log = logging.getLogger("affectstream.app")


def need(module: str, extra: str) -> ModuleType:
    """Import an optional part, or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UsageError(f"{e.name} is not installed: pip install 'affectstream[{extra}]'") from e


# --------------------------------------------------------------------------- parts
def ensure_profile(name: str) -> Path:
    """The prepared profile folder, preparing it on first use and adding components pinned since an older
    version prepared it (so an old profile never silently runs without, e.g., the trained adapter)."""
    from affectstream.engine.paths import profile_dir

    d = profile_dir(name)
    manifest = d / "manifest.json"
    if manifest.is_file():
        try:
            from affectstream.export.prepare import missing_components

            missing = missing_components(name, list(json.loads(manifest.read_text()).get("components", {})))
        except Exception:  # unreadable manifest: let prepare repair it
            missing = ["manifest"]
        if not missing:
            return d
        print(
            f"affectstream: updating the '{name}' profile in {d} (adding {', '.join(missing)})...",
            file=sys.stderr,
        )
    else:
        print(f"affectstream: preparing the '{name}' profile in {d} (first run)...", file=sys.stderr)
    prep = need("affectstream.export.prepare", "export")
    return Path(prep.prepare_profile(name, from_dir=None, dest=d, progress=sys.stderr.isatty()))


def build_analyzer(settings: Settings) -> Any:
    """The fast-path analyzer for the configured profile, preparing `lite` on first use."""
    if settings.profile == "r1-omni":
        if settings.omni.checkpoint is None:
            raise UsageError("--profile r1-omni needs --checkpoint DIR (an R1-Omni/HumanOmni-0.5B folder)")
        omni = need("affectstream.engine.omni.analyzer", "omni")
        return omni.OmniAnalyzer.from_checkpoint(
            settings.omni.checkpoint,
            device=settings.omni.device,
            dtype=settings.omni.dtype,
            audio_mode=settings.omni.audio_mode,
            max_new_tokens=settings.omni.max_new_tokens,
            **{
                k: getattr(settings.omni, k)
                for k in ("bert_dir", "vision_dir", "audio_dir", "onnx_dir", "llm_gguf")
                if getattr(settings.omni, k) is not None
            },
        )
    profile_dir = ensure_profile("lite")
    from affectstream.engine.lite import LiteAnalyzer

    return LiteAnalyzer.from_profile(profile_dir, settings.lite, runtime=settings.runtime)


async def build_executor(settings: Settings, live_streams: int) -> Any:
    """The fast path's executor when it is not the in-process thread (`executor.backend`; "auto" picks
    worker processes for several live streams), started; None for the thread backend.

    r1-omni stays in process (its reasoning comes from the same in-process generation). If the worker
    processes cannot start, the node still runs: one line says why and analysis stays in this process.
    """
    from affectstream.engine.executor.base import AnalyzerFactory, make_executor, resolve_backend

    if settings.profile != "lite" or resolve_backend(settings, live_streams) == "thread":
        return None
    ex = settings.executor
    profile_dir = await asyncio.to_thread(ensure_profile, "lite")
    factory = AnalyzerFactory.from_settings(
        settings, profile_dir=str(profile_dir), threads=ex.threads_per_worker
    )
    try:
        executor = make_executor(settings, factory, live_streams=live_streams)
        await executor.start()
    except Exception as e:
        if ex.backend != "auto":
            raise UsageError(f"executor backend {ex.backend!r} unavailable: {e}") from e
        print(
            f"affectstream: analysis worker processes unavailable ({e}); analysing in this process",
            file=sys.stderr,
        )
        return None
    return executor


def make_smoother(settings: Settings) -> Any:
    from affectstream.engine.smoother import Smoother, SmootherSettings

    return Smoother(SmootherSettings(tau_s=settings.smoothing.tau, hysteresis=settings.smoothing.hysteresis))


def make_mqtt_sink(m: MqttSettings, url: str) -> Any:
    """An MqttSink from the `mqtt` settings section (which has already merged and checked the URL's
    options); `url` is the broker actually used (the embedded one's when `m.url` is None)."""
    from affectstream.streams.sinks.mqtt import MqttSink, MqttTarget

    try:
        return MqttSink(MqttTarget.from_settings(m, url))
    except ValueError as e:
        raise UsageError(str(e)) from e


async def start_mqtt(settings: Settings) -> tuple[Any, Any]:
    """The MQTT sink for `settings.mqtt` and, when no broker URL is configured, the embedded broker it
    talks to (started here; the caller stops it). `(None, None)` when MQTT is disabled."""
    if not settings.mqtt.enabled:
        return None, None
    url, broker = settings.mqtt.url, None
    if url is None:
        from affectstream.streams.broker import EmbeddedBroker

        broker = EmbeddedBroker(settings.mqtt.embedded_host, settings.mqtt.embedded_port)
        try:
            await broker.start()
        except Exception as e:
            raise UsageError(str(e)) from e
        url = broker.url
        print(
            f"affectstream: embedded MQTT broker on {url} — watch with: "
            f"mosquitto_sub -h {settings.mqtt.embedded_host} -p {settings.mqtt.embedded_port} "
            f"-t '{settings.mqtt.prefix}/#' -v",
            file=sys.stderr,
        )
    return make_mqtt_sink(settings.mqtt, url), broker


def build_slow_path(settings: Settings, pipeline: Pipeline) -> Any:
    """The reasoning scheduler; reasoning is optional, so a missing runtime is a warning, not a failure."""
    if settings.profile == "r1-omni":
        return None  # its reasoning comes out of the same generation as the label (the Pipeline publishes it)
    try:
        from affectstream.engine.llm.scheduler import build_lite_slow_path
    except ImportError as e:
        print(f"affectstream: reasoning disabled ({e}); pip install 'affectstream[llm]'", file=sys.stderr)
        return None
    try:
        return build_lite_slow_path(settings, ensure_profile("lite"), pipeline.publish_reasoning)
    except Exception as e:
        print(f"affectstream: reasoning disabled: {e}", file=sys.stderr)
        return None


# --------------------------------------------------------------------------- the assembled app
@dataclass
class App:
    """Everything one engine process runs, built by `build_app`; `close()` releases it in reverse."""

    settings: Settings
    pipeline: Pipeline
    analyzer: Any
    sinks: list[Any]
    broker: Any = None
    slow: Any = None
    executor: Any = None  # worker processes (or Ray) when the fast path does not run in this process
    _closed: bool = field(default=False, repr=False)

    def undelivered(self) -> tuple[int, str | None]:
        """Messages the sinks could not deliver, and the last error one of them saw."""
        n = sum(int(getattr(sk, "pending", 0) or 0) for sk in self.sinks)
        last = next((sk.last_error for sk in self.sinks if getattr(sk, "last_error", None)), None)
        return n, last

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.executor is not None:
            with contextlib.suppress(Exception):
                await self.executor.close()
        with contextlib.suppress(Exception):
            self.analyzer.close()
        if self.slow is not None:
            with contextlib.suppress(Exception):
                self.slow.close()
        if self.broker is not None:
            await self.broker.stop()


async def build_app(
    settings: Settings,
    *,
    extra_sinks: Sequence[Any] = (),
    on_result: Callable[[WindowResult], None] | None = None,
    live_streams: int = 1,
) -> App:
    """Prepare the profile, open the sinks, load the analyzer and reasoning, and wire the Pipeline.

    `live_streams` (how many live streams are expected) lets `executor.backend = "auto"` choose worker
    processes for several live streams, the in-process thread otherwise.

    Sinks open before models load so a bad output path or broker URL fails in a second, not after the
    models have loaded.
    """
    sinks: list[Any] = list(extra_sinks)
    broker = None
    try:
        if settings.jsonl:
            from affectstream.streams.sinks.jsonl import JsonlSink, JsonlSinkError

            if settings.privacy.retention_hours and settings.jsonl != "-":
                from affectstream.streams.retention import prune_outputs

                out = Path(settings.jsonl).expanduser()
                prune_outputs(out.parent, settings.privacy.retention_hours * 3600, keep=[out])
            jsonl = JsonlSink(settings.jsonl)
            try:
                await jsonl.start()  # now, so a path that cannot be written fails before models load
            except JsonlSinkError as e:
                raise UsageError(str(e)) from None
            sinks.append(jsonl)
        mqtt_sink, broker = await start_mqtt(settings)
        if mqtt_sink is not None:
            sinks.append(mqtt_sink)
        if settings.profile == "lite":
            await asyncio.to_thread(ensure_profile, "lite")
        try:
            executor = await build_executor(settings, live_streams)
            analyzer = None if executor is not None else await asyncio.to_thread(build_analyzer, settings)
        except ModelFileError as e:  # a missing or damaged model file: one line naming it and the fix
            raise UsageError(str(e)) from None
    except BaseException:
        if broker is not None:
            await broker.stop()
        raise
    pipeline = Pipeline(
        settings,
        analyzer,
        sinks,
        smoother=make_smoother(settings),
        node_id=settings.mqtt.node_id,
        on_result=on_result,
        executor=executor,
    )
    app = App(settings, pipeline, analyzer, sinks, broker, executor=executor)
    if settings.reasoning.enabled:
        app.slow = build_slow_path(settings, pipeline)
        pipeline.slow_path = app.slow
    return app


def _on_stop_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, callback)


# --------------------------------------------------------------------------- run
@dataclass
class HttpOptions:
    """`run --http PORT`: the live dashboard and /metrics on their own HTTP server."""

    port: int
    host: str = "127.0.0.1"
    token: str | None = None


async def _start_ops(hub: Any, http: HttpOptions) -> Any:
    need("aiohttp", "webrtc")
    from affectstream.engine import __version__
    from affectstream.streams.web.dashboard import OpsServer
    from affectstream.streams.web.security import resolve_token

    if not 0 <= http.port <= 65535:
        raise UsageError(f"--http must be a port 0-65535, got {http.port}")
    token, generated = resolve_token(http.host, http.token)
    ops = OpsServer(hub, http.host, http.port, token, version=__version__)
    try:
        await ops.start()
    except OSError as e:
        raise UsageError(f"cannot listen on {http.host}:{http.port}: {e.strerror or e}") from e
    if generated:
        print(
            "affectstream: generated a bearer token for the dashboard (pass --token to choose one)",
            file=sys.stderr,
        )
    print(f"affectstream: dashboard at {ops.url} (metrics at /metrics)", file=sys.stderr, flush=True)
    return ops


def _write_report(collector: Any, out: Path, settings: Settings) -> None:
    """`run --report`: the report of what this run produced (same writer as `affectstream report`)."""
    from affectstream.streams.report.load import ReportError, from_records
    from affectstream.streams.report.write import write_report

    hours = settings.privacy.retention_hours
    results = from_records(collector.records, max_age_s=None if hours is None else hours * 3600)
    results.source = "this run"
    if not results.streams:
        print("affectstream: no report written: no window was analysed", file=sys.stderr)
        return
    try:
        w = write_report(results, out, retention_hours=hours)
    except ReportError as e:
        print(f"affectstream: {e}", file=sys.stderr)
        return
    for note in w.notes:
        print(f"affectstream: report: {note}", file=sys.stderr)
    print(f"affectstream: report written to {w.html}" + (f" and {w.png}" if w.png else ""), file=sys.stderr)


async def run_sources(
    settings: Settings,
    source_args: Sequence[str],
    *,
    on_result: Callable[[WindowResult], None] | None = None,
    report: Path | None = None,
    http: HttpOptions | None = None,
) -> int:
    """`affectstream run`: open every source (a bad one is one line, the others go on), run them all
    to their end or to SIGINT/SIGTERM. Exit code 1 if any source failed or messages were undelivered."""
    from affectstream.streams.sources.base import SourceError
    from affectstream.streams.sources.factory import open_source, parse_sources

    try:
        specs = parse_sources(list(source_args))
    except (SourceError, ValueError) as e:
        raise UsageError(str(e)) from e
    sources = []
    failed_open = 0
    for spec in specs:
        try:
            sources.append(open_source(spec, realtime=settings.realtime))
        except Exception as e:  # SourceError or a library error: one clear line, the others go on
            print(f"affectstream: {spec.stream_id}: {e}", file=sys.stderr)
            failed_open += 1
    if not sources:
        return 1

    extra: list[Any] = []
    collector = hub = ops = None
    if report is not None:
        from affectstream.streams.report.collect import ReportCollector
        from affectstream.streams.report.load import ReportError
        from affectstream.streams.report.write import check_output

        try:
            check_output(report)
        except ReportError as e:
            raise UsageError(str(e)) from e
        collector = ReportCollector()
        extra.append(collector)
    if http is not None:
        need("aiohttp", "webrtc")
        from affectstream.streams.sinks.live import LiveHub

        hub = LiveHub()
        extra.append(hub)
    live = sum(1 for s in sources if s.live or settings.realtime)
    # SIGINT/SIGTERM from now on, models loading included, is a clean stop with exit code 0
    stopping: list[Pipeline] = []
    stop_early = asyncio.Event()

    def on_signal() -> None:
        stop_early.set()
        for p in stopping:
            p.stop()

    _on_stop_signals(on_signal)
    try:
        app = await build_app(settings, extra_sinks=extra, on_result=on_result, live_streams=live)
    except BaseException:
        await _close_sources(sources)
        raise
    if stop_early.is_set():
        await _close_sources(sources)
        await app.close()
        print("affectstream: stopped before the streams started", file=sys.stderr)
        return 0
    stopping.append(app.pipeline)
    try:
        if hub is not None and http is not None:
            ops = await _start_ops(hub, http)
        states = await app.pipeline.run(sources)
    finally:
        if ops is not None:
            await ops.close()
        await app.close()
    if collector is not None and report is not None:
        _write_report(collector, report, settings)
    failed = failed_open + sum(1 for st in states.values() if st.status == "failed")
    undelivered, last = app.undelivered()
    if undelivered:
        print(
            f"affectstream: {undelivered} MQTT message(s) could not be delivered"
            + (f" ({last})" if last else ""),
            file=sys.stderr,
        )
    lost = _report_sink_losses(app.sinks, states)
    return 1 if failed or undelivered or lost else 0


def _report_sink_losses(sinks: Sequence[Any], states: dict[str, Any]) -> int:
    """The exit summary of what the sinks lost: a sink that stopped writing (full disk, closed pipe),
    results dropped from the full MQTT offline queue, and damaged media skipped per stream. Returns how
    many kinds of loss there were (non-zero makes the exit code 1; skipped damage does not)."""
    lost = 0
    for sk in sinks:
        failure = sk.failure() if callable(getattr(sk, "failure", None)) else None
        if failure:
            print(f"affectstream: {failure}; results after that were not written", file=sys.stderr)
            lost += 1
        dropped = int(getattr(sk, "dropped", 0) or 0)
        if dropped:
            print(
                f"affectstream: {dropped} MQTT message(s) were dropped while the broker was away (offline "
                "queue full; raise mqtt.offline_queue to keep more)",
                file=sys.stderr,
            )
            lost += 1
    for sid, st in states.items():
        n = int(getattr(getattr(st.source, "stats", None), "decode_errors", 0) or 0)
        if n:
            print(f"affectstream: {sid}: skipped {n} damaged packet(s)/frame(s) and went on", file=sys.stderr)
    return lost


async def _close_sources(sources: Sequence[Any]) -> None:
    for src in sources:
        with contextlib.suppress(Exception):
            await src.close()


async def run_on_ray(settings: Settings, source_args: Sequence[str], address: str | None) -> int:
    """`affectstream run --ray [ADDRESS]`: every source becomes a stream actor on a Ray cluster
    (engine/distributed/); this process coordinates and owns the node id's `available` and `stats`."""
    need("ray", "ray")
    from affectstream.engine.distributed.launch import run_cluster

    if settings.profile == "lite":
        await asyncio.to_thread(ensure_profile, "lite")
    if settings.jsonl:
        print("affectstream: --ray publishes to MQTT only; --jsonl is ignored", file=sys.stderr)
    node_sink, broker = await start_mqtt(settings)
    url = None if node_sink is None else (broker.url if broker is not None else settings.mqtt.url)
    try:
        return await run_cluster(settings, source_args, address=address, mqtt_url=url, node_sink=node_sink)
    finally:
        if broker is not None:
            await broker.stop()


# --------------------------------------------------------------------------- serve
@dataclass
class ServeOptions:
    """What `affectstream serve` adds to the settings: where to listen and who may call."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_peers: int = 4
    ice_servers: list[str] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None


def _check_serve_options(opts: ServeOptions) -> None:
    from affectstream.streams.web.ice import ice_configuration

    if opts.max_peers < 1:
        raise UsageError(f"--max-peers must be >= 1, got {opts.max_peers}")
    if not 0 <= opts.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {opts.port}")
    try:
        ice_configuration(opts.ice_servers)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if opts.tls_key is not None and opts.tls_cert is None:
        raise UsageError("--tls-key needs --tls-cert")
    for f in (opts.tls_cert, opts.tls_key):
        if f is not None and not Path(f).is_file():
            raise UsageError(f"TLS file not found: {f}")


def serve_executor_settings(settings: Settings) -> Settings:
    """`serve`'s executor defaults: unless `executor.workers` is set, one worker process fewer than the
    cores, so the call decoding in this process keeps a core (see `default_workers`)."""
    from affectstream.engine.executor.base import default_workers

    if settings.executor.workers is not None:
        return settings
    ex = settings.executor.model_copy(update={"workers": default_workers(reserve=1)})
    return settings.model_copy(update={"executor": ex})


async def serve(settings: Settings, opts: ServeOptions) -> int:
    """`affectstream serve`: the same app as `run`, with a WebRTC server adding each caller as a stream,
    until SIGINT/SIGTERM."""
    import ssl

    need("aiohttp", "webrtc")
    need("aiortc", "webrtc")
    from affectstream.engine import __version__
    from affectstream.streams.sinks.live import LiveHub
    from affectstream.streams.web.dashboard import OpsRoutes
    from affectstream.streams.web.datachannel import DataChannelSink
    from affectstream.streams.web.security import is_loopback_host, resolve_token
    from affectstream.streams.web.server import ServerConfig, WebRtcServer

    _check_serve_options(opts)
    token, generated = resolve_token(opts.host, opts.token)
    channels = DataChannelSink()
    # every caller is a live stream; several are expected, so "auto" runs the fast path in worker processes,
    # by default one fewer than the cores: this process decodes every caller's video
    settings = serve_executor_settings(settings)
    hub = LiveHub()  # the live dashboard and /metrics, on the same port as the call page
    app = await build_app(settings, extra_sinks=[channels, hub], live_streams=max(2, opts.max_peers))
    config = ServerConfig(
        host=opts.host,
        port=opts.port,
        token=token,
        max_peers=opts.max_peers,
        ice_servers=list(opts.ice_servers),
        tls_cert=opts.tls_cert,
        tls_key=opts.tls_key,
        notice=settings.privacy.notice,
        consent=settings.privacy.consent,
    )
    server = WebRtcServer(config, app.pipeline, channels, ops=OpsRoutes(hub, token, version=__version__))
    done = asyncio.Event()
    _on_stop_signals(done.set)
    try:
        try:
            await server.start()
        except ssl.SSLError as e:
            raise UsageError(f"cannot use the TLS certificate/key: {e}") from e
        except OSError as e:
            raise UsageError(f"cannot listen on {opts.host}:{opts.port}: {e.strerror or e}") from e
        if opts.tls_cert is None and not is_loopback_host(opts.host):
            print(
                "affectstream: warning: browsers only allow camera/microphone on https or localhost; "
                "pass --tls-cert/--tls-key for callers on other machines",
                file=sys.stderr,
            )
        if generated:
            print("affectstream: generated a bearer token (pass --token to choose one)", file=sys.stderr)
        print(f"affectstream: serving calls at {server.url}", flush=True)
        dash = server.url.replace("/?", "/dashboard?") if "/?" in server.url else server.url + "dashboard"
        print(f"affectstream: dashboard at {dash} (metrics at /metrics)", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        await done.wait()
        log.info("shutting down after %.0f s", time.monotonic() - t0)
    finally:
        await server.close()
        await app.close()
    return 0

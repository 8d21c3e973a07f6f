"""`affectstream run --ray [ADDRESS]`: turn command-line sources into stream actors and run them.

The assembly layer (engine/app.py) opens the node id's MQTT sink (and the embedded broker when no
URL is given, which only suits a one-machine cluster) and calls `run_cluster`; everything Ray-specific
stays below it, in this package and in engine/executor/ray_backend.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from affectstream.engine.config import Settings
from affectstream.engine.distributed.stream_actor import StreamSpec


def stream_specs(source_args: Sequence[str], realtime: bool) -> tuple[list[StreamSpec], list[str]]:
    """StreamSpecs for SOURCE arguments (unique ids as in a one-node run), and one line per bad one.

    Files are probed here so a typo fails in a second with one line; they must exist at the same path
    on every node (a shared volume, or the image), since a stream may be restarted anywhere.
    """
    from affectstream.streams.sources.base import SourceError
    from affectstream.streams.sources.factory import SourceSpec, parse_sources
    from affectstream.streams.sources.file import check_file

    specs: list[StreamSpec] = []
    errors: list[str] = []
    parsed: list[SourceSpec] = parse_sources(list(source_args))
    for p in parsed:
        if p.kind == "file":
            from pathlib import Path

            try:
                check_file(Path(p.target))
                p = SourceSpec(p.kind, str(Path(p.target).resolve()), p.stream_id, p.device)
            except SourceError as e:
                errors.append(f"{p.stream_id}: {e}")
                continue
        specs.append(StreamSpec(p.stream_id, p.kind, p.target, p.device, realtime))
    return specs, errors


async def run_cluster(
    settings: Settings,
    source_args: Sequence[str],
    *,
    address: str | None,
    mqtt_url: str | None,
    node_sink: Any = None,
    analyzer_factory: Callable[[], Any] | None = None,
) -> int:
    """Run every source as a stream actor until all end (or SIGINT/SIGTERM); exit code 1 if any failed."""
    from affectstream.engine.distributed.coordinator import ClusterRun
    from affectstream.engine.executor.base import AnalyzerFactory

    specs, errors = stream_specs(source_args, settings.realtime)
    for line in errors:
        print(f"affectstream: {line}", file=sys.stderr)
    if not specs:
        return 1
    factory = analyzer_factory or AnalyzerFactory.from_settings(
        settings, threads=settings.executor.threads_per_worker
    )

    def restarted(stream: str, node: str, why: str) -> None:
        print(
            f"affectstream: {stream}: restarting on another node ({why}; was on {node[:12]})", file=sys.stderr
        )

    run = ClusterRun(
        settings,
        specs,
        factory,
        address=address,
        mqtt_url=mqtt_url,
        node_sink=node_sink,
        on_restart=restarted,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, run.stop)
    try:
        outcomes = await run.run()
    except ValueError as e:  # e.g. more analyzer actors than the cluster has CPUs: one line, exit 2
        print(f"affectstream: {e}", file=sys.stderr)
        return 2
    failed = len(errors)
    for o in outcomes.values():
        c = o.counters
        print(
            f"affectstream: {o.stream}: {o.status}, {c.get('windows_analyzed', 0)} windows published, "
            f"{c.get('windows_dropped', 0)} dropped, {o.restarts} restart(s)"
            + (f" ({o.error})" if o.error else ""),
            file=sys.stderr,
        )
        failed += o.status == "failed"
    return 1 if failed else 0

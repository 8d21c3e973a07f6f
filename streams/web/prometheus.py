"""`/metrics` in the Prometheus text format, rendered from the engine's own `stats` message.

Why from `stats`: the pipeline already counts windows, drops, queue depths and sink state for the MQTT
`stats` topic; a second set of counters would drift from it. The live hub keeps the latest `stats`
payload (published every `mqtt.stats_interval` seconds, so values are at most that old:
`affectstream_stats_age_seconds` says how old) and the two latency histograms Prometheus needs
cumulative buckets for. Process figures (RSS, CPU, open files) come from prometheus-client's process
collector. prometheus-client is the `metrics` extra and is imported only when /metrics is scraped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from affectstream.streams.sinks.live import Histogram, LiveHub

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _families(hub: LiveHub, version: str) -> Iterator[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        InfoMetricFamily,
    )

    stats = hub.latest_stats or {}
    streams: dict[str, Any] = stats.get("streams") or {}

    info = InfoMetricFamily("affectstream_build", "Version, profile and node id of this engine.")
    info.add_metric(
        [], {"version": version, "profile": str(stats.get("profile", "")), "node": str(stats.get("node", ""))}
    )
    yield info
    up = GaugeMetricFamily("affectstream_uptime_seconds", "Seconds since the engine started.")
    up.add_metric([], float(stats.get("uptime_s") or 0.0))
    yield up
    age = GaugeMetricFamily(
        "affectstream_stats_age_seconds", "Age of the stats these metrics come from (-1: none yet)."
    )
    age.add_metric([], round(time.time() - float(stats["ts"]), 3) if stats.get("ts") else -1.0)
    yield age

    # --- per stream: counters and queue depth, straight from the stats rows
    counters = {
        "windows": ("affectstream_windows_total", "Windows cut from the stream."),
        "windows_analyzed": ("affectstream_windows_analyzed_total", "Windows analysed (fast path)."),
        "windows_dropped": (
            "affectstream_windows_dropped_total",
            "Windows dropped because the analyzer fell behind a live source (or failed).",
        ),
    }
    for key, (name, doc) in counters.items():
        fam = CounterMetricFamily(name, doc, labels=["stream"])
        for sid, row in streams.items():
            v = _num(row.get(key))
            if v is not None:
                fam.add_metric([sid], v)
        yield fam
    depth = GaugeMetricFamily(
        "affectstream_queue_depth",
        "Items waiting, per queue (windows per stream, reasoning, executor).",
        labels=["queue", "stream"],
    )
    for sid, row in streams.items():
        for key, q in (("windows_pending", "windows_pending"), ("windows_in_flight", "windows_in_flight")):
            v = _num(row.get(key))
            if v is not None:
                depth.add_metric([q, sid], v)
    reasoning = stats.get("reasoning") or {}
    for key in ("pending", "in_flight"):
        v = _num(reasoning.get(key))
        if v is not None:
            depth.add_metric([f"reasoning_{key}", ""], v)
    executor = stats.get("executor") or {}
    v = _num(executor.get("in_flight"))
    if v is not None:
        depth.add_metric(["executor_in_flight", ""], v)
    yield depth
    running = GaugeMetricFamily(
        "affectstream_stream_running",
        "1 while the stream runs, 0 once it finished/failed/stopped.",
        labels=["stream", "status"],
    )
    fps = GaugeMetricFamily(
        "affectstream_stream_fps",
        "Frames in / windows processed per second over the last stats interval.",
        labels=["stream", "direction"],
    )
    for sid, row in streams.items():
        status = str(row.get("status", "unknown"))
        running.add_metric([sid, status], 1.0 if status == "running" else 0.0)
        for key, d in (("fps_in", "frames_in"), ("fps_processed", "windows_processed")):
            v = _num(row.get(key))
            if v is not None:
                fps.add_metric([sid, d], v)
    yield running
    yield fps

    # --- latency histograms (accumulated by the hub from the results)
    def hist(name: str, doc: str, h: Histogram) -> Any:
        fam = HistogramMetricFamily(name, doc)
        fam.add_metric([], h.buckets(), sum_value=h.total)
        return fam

    yield hist(
        "affectstream_fast_path_latency_seconds",
        "Window closed -> result ready (fast path), per window.",
        hub.fast_latency,
    )
    yield hist(
        "affectstream_reasoning_latency_seconds", "LLM reasoning time per generation.", hub.reasoning_latency
    )
    rs = CounterMetricFamily(
        "affectstream_reasoning_results_total", "Reasoning messages published, by validity.", labels=["valid"]
    )
    rs.add_metric(["true"], float(hub.reasoning_total - hub.reasoning_invalid))
    rs.add_metric(["false"], float(hub.reasoning_invalid))
    yield rs

    # --- sinks: MQTT state and pending messages, errors of every sink
    sinks: dict[str, Any] = stats.get("sinks") or {}
    mqtt = next((v for k, v in sinks.items() if k.lower().startswith("mqtt")), None)
    if mqtt is not None:
        conn = GaugeMetricFamily("affectstream_mqtt_connected", "1 while connected to the broker.")
        conn.add_metric([], 1.0 if mqtt.get("connected") else 0.0)
        yield conn
        pend = GaugeMetricFamily(
            "affectstream_mqtt_pending_messages", "Messages queued or in flight, not yet acknowledged."
        )
        pend.add_metric([], float(mqtt.get("queued") or 0))
        yield pend
        qmax = GaugeMetricFamily("affectstream_mqtt_queue_max", "Bound of the offline queue.")
        qmax.add_metric([], float(mqtt.get("queue_max") or 0))
        yield qmax
        msgs = CounterMetricFamily(
            "affectstream_mqtt_messages_total",
            "MQTT sink message outcomes (published, dropped, requeued, coalesced, skipped_offline, invalid).",
            labels=["outcome"],
        )
        conns = CounterMetricFamily(
            "affectstream_mqtt_connections_total",
            "Broker connections (connects, reconnects).",
            labels=["kind"],
        )
        for k, val in mqtt.items():
            n = _num(val)
            if n is None or k in ("connected", "queued", "queue_max", "same_node_seen"):
                continue
            if k in ("connects", "reconnects", "connect_failures", "auth_failures", "disconnects"):
                conns.add_metric([k], n)
            else:
                msgs.add_metric([_NAME.sub("_", k)], n)
        yield msgs
        yield conns
    errs = CounterMetricFamily("affectstream_sink_errors_total", "Errors raised by sinks (never fatal).")
    errs.add_metric([], float(stats.get("sink_errors") or 0))
    yield errs

    # --- model runtimes: what really executes each encoder
    rt = GaugeMetricFamily(
        "affectstream_model_runtime_info",
        "1 per model component, labelled with the runtime, device, providers and precision it really got.",
        labels=["component", "runtime", "device", "providers", "precision"],
    )
    for comp, d in (stats.get("runtime") or {}).items():
        if isinstance(d, dict) and "name" in d:
            rt.add_metric(
                [
                    str(comp),
                    str(d.get("name", "")),
                    str(d.get("device", "")),
                    ",".join(map(str, d.get("providers") or [])),
                    str(d.get("precision", "")),
                ],
                1.0,
            )
    yield rt
    workers = [
        w for w in executor.get("per_worker") or executor.get("workers_info") or [] if isinstance(w, dict)
    ]
    if workers:
        wrss = GaugeMetricFamily(
            "affectstream_worker_resident_memory_bytes",
            "RSS of each analyzer worker process.",
            labels=["slot"],
        )
        for w in workers:
            mb = _num(w.get("rss_mb"))
            if mb is not None:
                wrss.add_metric([str(w.get("slot", ""))], mb * 1024 * 1024)
        yield wrss

    # --- the dashboard itself
    subs = GaugeMetricFamily("affectstream_dashboard_subscribers", "Dashboard viewers connected now.")
    subs.add_metric([], float(hub.subscribers))
    yield subs
    dd = CounterMetricFamily(
        "affectstream_dashboard_dropped_messages_total", "Messages a slow dashboard viewer did not get."
    )
    dd.add_metric([], float(hub.dropped))
    yield dd


def render_metrics(hub: LiveHub, version: str = "") -> bytes:
    """The exposition text of one scrape (a fresh registry, so nothing is registered globally)."""
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

    class _Collector:
        def collect(self) -> Iterator[Any]:
            return _families(hub, version)

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu seconds, open fds
    registry.register(_Collector())  # type: ignore[arg-type]
    return generate_latest(registry)

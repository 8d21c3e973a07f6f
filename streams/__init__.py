"""affectstream.streams: sources, windowing, sinks, the MQTT contract and the WebRTC page.

The names a user of the library needs, importable from here (loaded on first use):

    from affectstream.streams import open_source, Windower, MqttSink, JsonlSink, validate
"""

from __future__ import annotations

from affectstream.engine.lazy import lazy_exports

_LAZY = {
    "open_source": "affectstream.streams.sources.factory",
    "parse_sources": "affectstream.streams.sources.factory",
    "Source": "affectstream.streams.sources.base",
    "Windower": "affectstream.streams.windower",
    "Sink": "affectstream.streams.sinks.base",
    "MqttSink": "affectstream.streams.sinks.mqtt",
    "JsonlSink": "affectstream.streams.sinks.jsonl",
    "EmbeddedBroker": "affectstream.streams.broker",
    "Topics": "affectstream.streams.contract",
    "validate": "affectstream.streams.contract",
}
__all__, __getattr__ = lazy_exports(__name__, _LAZY)

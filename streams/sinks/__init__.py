"""Sinks: where results go (MQTT, JSONL). Every sink gets every message; a failing sink never stops the engine."""

from affectstream.streams.sinks.base import Sink
from affectstream.streams.sinks.jsonl import JsonlSink, JsonlSinkError
from affectstream.streams.sinks.mqtt import MqttSink, MqttTarget

__all__ = ["JsonlSink", "JsonlSinkError", "MqttSink", "MqttTarget", "Sink"]

"""The slow path on a Ray cluster: reasoner actors that explain windows and publish `reasoning`.

Each actor loads the quantized LLM once (llama.cpp, the profile's GGUF and adapter) and runs the same
scheduler as one node (`engine/llm/scheduler.py`: triggers on the first window, label changes and every
N windows, at most one generation per stream at a time), then publishes `<prefix>/<stream>/reasoning`
itself with the node id's topics. Stream actors hand it each published window result without waiting
(fire and forget): a slow or dead reasoner never delays labels. A stream always goes to the same
reasoner (`slot_for`), because the triggers are per-stream state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import zlib
from typing import Any

from affectstream.engine.types import WindowResult


def slot_for(stream: str, n: int) -> int:
    """The reasoner of a stream: stable across restarts and nodes, spread evenly by hash."""
    return zlib.crc32(stream.encode()) % max(1, n)


class ReasonerActor:
    """Wrapped by `ray.remote` as an asyncio actor."""

    def __init__(
        self, settings_json: str, mqtt_url: str | None, index: int, profile: str | None = None
    ) -> None:
        from affectstream.engine.config import Settings

        self.settings = Settings.model_validate_json(settings_json)
        self.mqtt_url = mqtt_url
        self.index = index
        self.profile = profile  # the lite profile folder; None: this node's $AFFECTSTREAM_HOME
        self.sched: Any = None
        self.sink: Any = None
        self.error: str | None = None
        self._ready: asyncio.Future[None] | None = None

    async def ready(self) -> dict[str, Any]:
        """Load the LLM and connect (once); the coordinator waits for this before starting streams."""
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._load())
        await asyncio.shield(self._ready)
        return {"pid": os.getpid(), "error": self.error}

    async def _load(self) -> None:
        from affectstream.engine.llm.scheduler import build_lite_slow_path
        from affectstream.engine.paths import profile_dir
        from affectstream.streams.sinks.mqtt import MqttSink, MqttTarget

        m = self.settings.mqtt
        if self.mqtt_url is not None:
            self.sink = MqttSink(
                MqttTarget.from_url(
                    self.mqtt_url,
                    node_id=m.node_id,
                    prefix=f"{m.prefix}/{m.node_id}",
                    client_id=f"affectstream-{m.node_id}-reasoner{self.index}-{os.getpid()}"[:64],
                    availability=False,
                    **({"username": m.username} if m.username else {}),
                    **({"password": m.password} if m.password else {}),
                )
            )
            await self.sink.start()
        try:
            self.sched = await asyncio.to_thread(
                build_lite_slow_path, self.settings, self.profile or profile_dir("lite"), self._publish
            )
        except Exception as e:  # reasoning is optional: labels go on without it
            self.error = f"{type(e).__name__}: {e}"

    async def _publish(self, r: Any) -> None:
        if self.sink is not None:
            await self.sink.publish_reasoning(r)

    async def offer(self, result: WindowResult) -> bool:
        await self.ready()
        return bool(self.sched is not None and self.sched.offer(result))

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "error": self.error}
        if self.sched is not None:
            out.update(self.sched.stats())
        return out

    async def drain(self, timeout: float = 30.0) -> None:
        """Finish the generations in progress, flush MQTT (end of run)."""
        if self.sched is not None:
            with contextlib.suppress(Exception):
                await self.sched.drain(timeout)
        if self.sink is not None:
            await self.sink.close()

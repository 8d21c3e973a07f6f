"""A bounded asyncio queue that drops its oldest item when full, and counts what it dropped.

Between the windower and the analyzer the right policy for a real-time engine is "latest wins": when
the analyzer falls behind, an old window is worth less than a new one, and queueing without bound
would grow memory and latency forever. `put_nowait` therefore never blocks and never fails; it evicts
the oldest item and increments `dropped`, which the engine reports in `stats`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueClosed(Exception):
    """Raised by `get()` once the queue is closed and empty."""


class DropOldestQueue(Generic[T]):
    """Bounded FIFO for one event loop: `put_nowait` evicts the oldest item when full (counted).

    `close()` lets consumers drain what is left and then stop (`get` raises `QueueClosed`,
    `async for` ends). `on_drop` is called with each evicted item, e.g. to log which window was lost.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[T], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.dropped = 0
        self.put_count = 0
        self._items: deque[T] = deque()
        self._on_drop = on_drop
        self._closed = False
        self._event = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T) -> T | None:
        """Append `item`; if the queue was full, evict and return the oldest item (else None)."""
        if self._closed:
            raise QueueClosed("put on a closed queue")
        evicted: T | None = None
        if len(self._items) >= self.maxsize:
            evicted = self._items.popleft()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(evicted)
        self._items.append(item)
        self.put_count += 1
        self._event.set()
        return evicted

    def get_nowait(self) -> T:
        """Pop the oldest item; raises `asyncio.QueueEmpty` (or `QueueClosed` when closed and empty)."""
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise QueueClosed("queue closed")
        raise asyncio.QueueEmpty

    async def get(self) -> T:
        """Wait for the oldest item; raises `QueueClosed` once closed and drained."""
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                raise QueueClosed("queue closed")
            self._event.clear()
            await self._event.wait()

    def close(self) -> None:
        """No more puts; consumers get what is left and then stop."""
        self._closed = True
        self._event.set()

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._items), "dropped": self.dropped, "put": self.put_count}

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except QueueClosed:
                return

"""The bounded drop-oldest queue between the windower and the analyzer."""

from __future__ import annotations

import asyncio

import pytest
from affectstream.streams.queue import DropOldestQueue, QueueClosed


async def test_full_queue_drops_oldest_and_counts():
    dropped = []
    q: DropOldestQueue[int] = DropOldestQueue(3, on_drop=dropped.append)
    for i in range(10):
        q.put_nowait(i)
    assert len(q) == 3 and q.dropped == 7 and dropped == list(range(7))
    assert [await q.get(), await q.get(), await q.get()] == [7, 8, 9]
    assert q.stats() == {"queued": 0, "dropped": 7, "put": 10}


async def test_consumer_waits_then_drains_after_close():
    q: DropOldestQueue[str] = DropOldestQueue(4)
    got = []

    async def consume():
        async for item in q:
            got.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    q.put_nowait("a")
    await asyncio.sleep(0.01)
    q.put_nowait("b")
    q.put_nowait("c")
    q.close()
    await asyncio.wait_for(task, 2)
    assert got == ["a", "b", "c"]
    with pytest.raises(QueueClosed):
        q.put_nowait("d")
    with pytest.raises(QueueClosed):
        await q.get()


def test_maxsize_must_be_positive():
    with pytest.raises(ValueError, match="maxsize"):
        DropOldestQueue(0)

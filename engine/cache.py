"""A bounded LRU cache with counters, shared by the per-frame feature caches of every profile.

Overlapping windows see the same frames again; caching what a frame produced (faces, expressions,
SigLIP features) means each frame is encoded once. Bounded, because an engine runs for weeks.
"""

from __future__ import annotations

import collections
from typing import Any


class LruCache:
    """A bounded mapping with least-recently-used eviction and hit/miss/eviction counters."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, int(capacity))
        self._d: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Any) -> Any | None:
        v = self._d.get(key)
        if v is None:
            self.misses += 1
            return None
        self._d.move_to_end(key)
        self.hits += 1
        return v

    def peek(self, key: Any) -> Any | None:
        """Look without counting a hit/miss or refreshing recency."""
        return self._d.get(key)

    def put(self, key: Any, value: Any) -> None:
        if self.capacity == 0:
            return
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.capacity:
            self._d.popitem(last=False)
            self.evictions += 1

    def __len__(self) -> int:
        return len(self._d)

    def stats(self) -> dict[str, int]:
        return {
            "size": len(self._d),
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }

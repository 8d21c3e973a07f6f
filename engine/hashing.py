"""SHA-256 of files and bytes: the one helper every pin, manifest and cache key uses.

Pins and manifests compare hex digests, so every caller must hash the same way (whole file, streamed).
`cached_sha256` remembers digests by (path, size, mtime) because many streams and tests open the same
profile in one process and re-hashing hundreds of MB each time would dominate start-up.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_CHUNK = 1 << 20
_CACHE: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of bytes already in memory (cache keys, serialized plans, ids built from text)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed so a large model never sits in memory twice."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cached_sha256(path: str | Path) -> str:
    """`sha256_file`, remembered until the file's size or modification time changes."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    digest = sha256_file(p)
    with _LOCK:
        _CACHE[key] = digest
    return digest

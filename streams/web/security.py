"""Who may open a call: bearer tokens, body size, and the cap on concurrent peers.

Why these rules: a call streams someone's face and voice into the engine, so a server reachable from
other machines must not accept anonymous callers. On loopback the OS already limits callers to this
machine, so a token is optional there; anywhere else one is required and, when none is given, a random
one is generated and printed with the page URL. Tokens are compared in constant time
(`hmac.compare_digest`) so response timing does not leak them byte by byte.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from affectstream.streams.web.ice import is_loopback_host

# An SDP offer with audio, video and a data channel is ~3-6 KB; 64 KiB leaves room for many codecs
# and candidates while refusing anything that is clearly not an offer.
MAX_BODY_BYTES = 64 * 1024
# A real offer arrives in one round trip; a client that takes longer than this to send 64 KiB is
# holding a connection open (slowloris), not calling.
BODY_TIMEOUT_S = 10.0


def resolve_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token the server will require, and whether it was generated here (so it must be printed)."""
    if token:
        return token, False
    if is_loopback_host(host):
        return None, False
    return secrets.token_urlsafe(24), True


def bearer_from(authorization: str | None, query_token: str | None = None) -> str | None:
    """The token a request presents: `Authorization: Bearer X`, else `?token=X` (for plain links)."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return query_token or None


def token_ok(expected: str | None, presented: str | None) -> bool:
    """True when no token is required, or the presented one matches (constant time)."""
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


@dataclass
class PeerSlots:
    """A counting cap on concurrent calls: `acquire()` fails instead of queueing a caller."""

    limit: int
    active: set[str] = field(default_factory=set)
    refused: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"max peers must be >= 1, got {self.limit}")

    def acquire(self, peer_id: str) -> bool:
        if len(self.active) >= self.limit:
            self.refused += 1
            return False
        self.active.add(peer_id)
        return True

    def release(self, peer_id: str) -> None:
        self.active.discard(peer_id)

    def __len__(self) -> int:
        return len(self.active)

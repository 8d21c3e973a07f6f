"""ICE configuration for the WebRTC server: no STUN/TURN unless configured, loopback-only when serving
on loopback.

Why: aiortc's default configuration contacts a public Google STUN server, and aioice offers every
non-loopback address of the machine but never 127.0.0.1. A server bound to loopback must neither leak
packets to the internet nor be unreachable by a local browser, so `restrict_to_loopback()` replaces
aioice's address discovery with one that returns only 127.0.0.1 (the patch is process-wide, because
aioice looks the function up at gathering time; it is undone by `restore()`/the context manager).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from aiortc import RTCConfiguration, RTCIceServer

LOOPBACK_V4 = "127.0.0.1"
_ORIGINAL: Callable[..., list[str]] | None = None


def _loopback_addresses(use_ipv4: bool = True, use_ipv6: bool = False) -> list[str]:
    return [LOOPBACK_V4] if use_ipv4 else []


def restrict_to_loopback() -> None:
    """Make every aiortc peer in this process gather only the 127.0.0.1 host candidate."""
    import aioice.ice

    global _ORIGINAL
    if _ORIGINAL is None:
        _ORIGINAL = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_addresses


def restore() -> None:
    """Undo `restrict_to_loopback()` (tests that need the machine's real addresses)."""
    import aioice.ice

    global _ORIGINAL
    if _ORIGINAL is not None:
        aioice.ice.get_host_addresses = _ORIGINAL
        _ORIGINAL = None


def loopback_only_active() -> bool:
    import aioice.ice

    return aioice.ice.get_host_addresses is _loopback_addresses


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """`restrict_to_loopback()` for the duration of a block, restoring the previous behaviour after."""
    was = loopback_only_active()
    restrict_to_loopback()
    try:
        yield
    finally:
        if not was:
            restore()


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: the only binds that need no token."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_ice_server(url: str) -> RTCIceServer:
    """`stun:host:port` or `turn[s]:user:password@host:port[?transport=udp|tcp]` → RTCIceServer.

    Credentials ride in the URL's user-info because `--ice-server` is a single flag; they are
    percent-decoded so passwords may contain `:` or `@`.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("stun", "stuns", "turn", "turns"):
        raise ValueError(f"invalid ICE server {url!r}: expected stun:, stuns:, turn: or turns:")
    rest = url.split(":", 1)[1]
    user = password = None
    if "@" in rest:
        cred, rest = rest.rsplit("@", 1)
        user, _, password = cred.partition(":")
        user, password = unquote(user), unquote(password)
    if not rest or rest.startswith(":"):
        raise ValueError(f"invalid ICE server {url!r}: no host")
    if scheme.startswith("turn") and not (user and password):
        raise ValueError(f"invalid ICE server {url!r}: TURN needs user:password@host")
    return RTCIceServer(urls=f"{scheme}:{rest}", username=user, credential=password)


def ice_configuration(servers: list[str] | None = None) -> RTCConfiguration:
    """The server side's RTCConfiguration: exactly the configured servers, none by default."""
    return RTCConfiguration(iceServers=[parse_ice_server(u) for u in servers or []])


def browser_ice_servers(servers: list[str] | None = None) -> list[dict[str, Any]]:
    """The same servers in the shape the page passes to `new RTCPeerConnection({iceServers})`."""
    out: list[dict[str, Any]] = []
    for u in servers or []:
        s = parse_ice_server(u)
        d: dict[str, Any] = {"urls": s.urls}
        if s.username:
            d["username"], d["credential"] = s.username, s.credential
        out.append(d)
    return out

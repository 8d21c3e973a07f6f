"""CLI SOURCE strings → `Source` objects, with short stable stream ids.

Accepted forms (the CLI contract): a file path (or file://), `camera:N` / `camera:/dev/videoN` /
`/dev/videoN`, `rtsp://…`, `udp://…`, `http(s)://…` (and other FFmpeg network schemes), `mic` / `mic:N`,
each optionally prefixed `name=` to choose the stream id. Default ids are derived from the source itself
(file stem, `cam0`, `mic`, URL path), not from run order, so topics stay the same across restarts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from affectstream.streams.sources.base import Source, SourceError
from affectstream.streams.sources.url import URL_SCHEMES, redact

Kind = Literal["file", "camera", "url", "mic"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAME_PREFIX_RE = re.compile(r"^([^=/:\\]+)=(.+)$")
MAX_DEFAULT_ID = 32


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed SOURCE argument: what to open and under which stream id."""

    kind: Kind
    target: str  # file path, URL, or device as written
    stream_id: str
    device: int | str | None = None  # camera index/path or mic index

    def describe(self) -> str:
        return redact(self.target) if self.kind == "url" else self.target


def slug(text: str, fallback: str) -> str:
    """A topic-safe id: letters, digits, `_ . -`; never empty; at most MAX_DEFAULT_ID characters."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")[:MAX_DEFAULT_ID].strip("-._")
    return s or fallback


def _url_id(url: str) -> str:
    parts = urlsplit(url)
    segs = [unquote(p) for p in parts.path.split("/") if p]
    if segs:
        return slug(Path(segs[-1]).stem or segs[-1], parts.scheme)
    host = (parts.hostname or "").replace(".", "-")
    return slug(
        f"{parts.scheme}-{host}-{parts.port}" if parts.port else f"{parts.scheme}-{host}", parts.scheme
    )


def parse_source(spec: str) -> SourceSpec:
    """Parse one SOURCE string; raises SourceError (one line) for forms that cannot work."""
    if not spec or not spec.strip():
        raise SourceError("empty SOURCE")
    spec = spec.strip()
    name: str | None = None
    m = _NAME_PREFIX_RE.match(spec)
    if m and not Path(spec).exists():
        name, spec = m.group(1), m.group(2)
        if not NAME_RE.match(name):
            raise SourceError(f"invalid stream name {name!r}: use letters, digits, '_', '.', '-' (max 64)")

    low = spec.lower()
    if low == "mic" or low.startswith("mic:"):
        rest = spec[4:]
        if rest and not rest.isdigit():
            raise SourceError(f"{spec}: expected mic or mic:N (N a device index)")
        dev = int(rest) if rest else None
        return SourceSpec("mic", spec, name or ("mic" if dev is None else f"mic{dev}"), dev)
    if low.startswith("camera:"):
        rest = spec[7:]
        if rest.isdigit():
            return SourceSpec("camera", spec, name or f"cam{int(rest)}", int(rest))
        if rest.startswith("/"):
            return SourceSpec("camera", spec, name or _camera_path_id(rest), rest)
        raise SourceError(f"{spec}: expected camera:N or camera:/dev/videoN")
    if spec.startswith("/dev/video"):
        return SourceSpec("camera", spec, name or _camera_path_id(spec), spec)
    if "://" in spec:
        scheme = spec.split("://", 1)[0].lower()
        if scheme == "file":
            path = unquote(urlsplit(spec).path)
            return SourceSpec("file", path, name or slug(Path(path).stem, "file"))
        if scheme not in URL_SCHEMES:
            raise SourceError(
                f"{redact(spec)}: unsupported URL scheme {scheme!r} (use {', '.join(URL_SCHEMES)})"
            )
        return SourceSpec("url", spec, name or _url_id(spec))
    return SourceSpec("file", spec, name or slug(Path(spec).stem, "file"))


def _camera_path_id(path: str) -> str:
    m = re.match(r"^/dev/video(\d+)$", path)
    return f"cam{m.group(1)}" if m else slug(Path(path).name, "cam")


def parse_sources(specs: list[str]) -> list[SourceSpec]:
    """Parse several SOURCEs; default ids that collide get `-2`, `-3`…; duplicate explicit names fail."""
    parsed = [parse_source(s) for s in specs]
    explicit = [p.stream_id for p, s in zip(parsed, specs, strict=True) if _has_name(s)]
    dup = {n for n in explicit if explicit.count(n) > 1}
    if dup:
        raise SourceError(f"stream name used twice: {', '.join(sorted(dup))}")
    taken: set[str] = set(explicit)
    out = []
    for p, s in zip(parsed, specs, strict=True):
        sid = p.stream_id
        if not _has_name(s):
            base, i = sid, 2
            while sid in taken:
                sid, i = f"{base}-{i}", i + 1
            taken.add(sid)
        out.append(SourceSpec(p.kind, p.target, sid, p.device))
    return out


def _has_name(spec: str) -> bool:
    m = _NAME_PREFIX_RE.match(spec.strip())
    return bool(m) and not Path(spec.strip()).exists()


def open_source(spec: SourceSpec | str, *, realtime: bool = False, **options: Any) -> Source:
    """Build the Source for a spec. `options` go to the source class (e.g. `max_retries`, `speed`);
    nothing is opened yet except that a file is probed, so bad files fail here with one line."""
    if isinstance(spec, str):
        spec = parse_source(spec)
    if spec.kind == "file":
        from affectstream.streams.sources.file import FileSource

        src: Source = FileSource(spec.target, spec.stream_id, realtime=realtime, **options)
        src.open()  # type: ignore[attr-defined]
        return src
    if spec.kind == "url":
        from affectstream.streams.sources.url import UrlSource

        return UrlSource(spec.target, spec.stream_id, **options)
    if spec.kind == "camera":
        from affectstream.streams.sources.camera import CameraSource

        assert spec.device is not None
        return CameraSource(spec.device, spec.stream_id, **options)
    from affectstream.streams.sources.mic import MicSource

    return MicSource(spec.device if isinstance(spec.device, int) else None, spec.stream_id, **options)


def make_sources(specs: list[str], *, realtime: bool = False) -> tuple[list[Source], list[tuple[str, str]]]:
    """Open several SOURCEs as one run: unique stream ids (default ids that collide get `-2`, `-3`…),
    and each SOURCE that cannot be used gives `(spec, one-line reason)` while the others still open."""
    errors: list[tuple[str, str]] = []
    parsed: list[tuple[str, SourceSpec]] = []
    for s in specs:
        try:
            parsed.append((s, parse_source(s)))
        except SourceError as e:
            errors.append((s, str(e)))
    taken: set[str] = set()
    named = [(s, p) for s, p in parsed if _has_name(s)]
    unique: list[tuple[str, SourceSpec]] = []
    for s, p in named:
        if p.stream_id in taken:
            errors.append((s, f"stream name {p.stream_id!r} used twice"))
            continue
        taken.add(p.stream_id)
    for s, p in parsed:
        if _has_name(s):
            if not any(e[0] == s for e in errors):
                unique.append((s, p))
            continue
        sid, i = p.stream_id, 2
        while sid in taken:
            sid, i = f"{p.stream_id}-{i}", i + 1
        taken.add(sid)
        unique.append((s, SourceSpec(p.kind, p.target, sid, p.device)))
    sources: list[Source] = []
    for s, p in unique:
        try:
            sources.append(open_source(p, realtime=realtime))
        except SourceError as e:
            errors.append((s, str(e)))
    return sources, errors

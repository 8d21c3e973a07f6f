"""SOURCE strings → sources: every CLI form, stable default stream ids, name= overrides, bad forms."""

from __future__ import annotations

from pathlib import Path

import pytest
from affectstream.streams.sources.base import SourceError
from affectstream.streams.sources.camera import CameraSource
from affectstream.streams.sources.factory import make_sources, open_source, parse_source, parse_sources
from affectstream.streams.sources.file import FileSource
from affectstream.streams.sources.mic import MicSource
from affectstream.streams.sources.url import UrlSource


@pytest.mark.parametrize(
    ("spec", "kind", "sid", "device"),
    [
        ("clips/interview.mp4", "file", "interview", None),
        ("/data/My Clip (1).mkv", "file", "My-Clip-1", None),
        ("file:///tmp/a%20b.mp4", "file", "a-b", None),
        ("camera:0", "camera", "cam0", 0),
        ("camera:/dev/video3", "camera", "cam3", "/dev/video3"),
        ("/dev/video2", "camera", "cam2", "/dev/video2"),
        ("mic", "mic", "mic", None),
        ("mic:2", "mic", "mic2", 2),
        ("rtsp://admin:pw@10.0.0.5:554/stream1", "url", "stream1", None),
        ("udp://127.0.0.1:5000", "url", "udp-127-0-0-1-5000", None),
        ("https://example.org/live/index.m3u8", "url", "index", None),
        ("lobby=rtsp://10.0.0.5/x?a=b", "url", "lobby", None),
        ("front=camera:1", "camera", "front", 1),
        ("desk=mic", "mic", "desk", None),
    ],
)
def test_parse_every_form(spec: str, kind: str, sid: str, device):
    p = parse_source(spec)
    assert (p.kind, p.stream_id, p.device) == (kind, sid, device)
    assert parse_source(spec) == p  # stable: the same SOURCE always gets the same id


def test_ids_are_topic_safe():
    for spec in ["a+b#c/d.mp4", "rtsp://h/some path/+#", "ü.mp4"]:
        sid = parse_source(spec).stream_id
        assert sid and not set(sid) & set("/+# ") and len(sid) <= 32


def test_colliding_default_ids_get_suffixes_and_explicit_names_win():
    specs = ["a/clip.mp4", "b/clip.mp4", "clip=c.mp4"]
    assert [p.stream_id for p in parse_sources(specs)] == ["clip-2", "clip-3", "clip"]
    with pytest.raises(SourceError, match="used twice"):
        parse_sources(["x=a.mp4", "x=b.mp4"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ftp://host/a.mp4", "unsupported URL scheme"),
        ("camera:front", "expected camera:N"),
        ("mic:left", "expected mic or mic:N"),
        ("my cam=clip.mp4", "invalid stream name"),
        ("  ", "empty SOURCE"),
    ],
)
def test_bad_specs_fail_with_one_line(spec: str, message: str):
    with pytest.raises(SourceError, match=message) as e:
        parse_source(spec)
    assert "\n" not in str(e.value)


def test_open_source_builds_each_kind(clip_av: Path):
    f = open_source(f"talk={clip_av}", realtime=True)
    assert isinstance(f, FileSource) and f.stream_id == "talk" and f.realtime and f.duration
    assert isinstance(open_source("udp://127.0.0.1:5000"), UrlSource)
    assert isinstance(open_source("camera:0"), CameraSource)
    assert isinstance(open_source("mic"), MicSource)


def test_existing_file_with_equals_sign_is_a_file(tmp_path: Path, clip_av: Path):
    odd = tmp_path / "take=2.mp4"
    odd.write_bytes(clip_av.read_bytes())
    p = parse_source(str(odd))
    assert p.kind == "file" and p.target == str(odd) and p.stream_id == "take-2"


def test_make_sources_opens_the_good_ones_and_reports_the_bad(
    tmp_path: Path, clip_av: Path, clip_video_only: Path
):
    (tmp_path / "clip.mp4").write_bytes(clip_video_only.read_bytes())
    specs = [str(clip_av), str(tmp_path / "clip.mp4"), "x=missing.mp4", "ftp://h/a", "x=camera:0", "av=mic"]
    sources, errors = make_sources(specs)
    ids = [s.stream_id for s in sources]
    assert ids == ["av-2", "clip", "av"]  # the default id that collides with an explicit name moves
    reasons = dict(errors)
    assert "no such file" in reasons["x=missing.mp4"]
    assert "unsupported URL scheme" in reasons["ftp://h/a"]
    assert "used twice" in reasons["x=camera:0"]

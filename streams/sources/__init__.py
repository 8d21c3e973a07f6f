"""Sources: files, network URLs, cameras and microphones as async iterators of frames and audio.

Import the concrete classes from their modules (`file`, `url`, `camera`, `mic`) or build one from a CLI
SOURCE string with `factory.open_source`; this package stays import-light.
"""

from affectstream.streams.sources.base import Source, SourceError, SourceStats, ThreadedSource

__all__ = ["Source", "SourceError", "SourceStats", "ThreadedSource"]

"""A local camera (`camera:N`, `/dev/videoN`) through OpenCV, read in a thread.

A camera is live: frames that the engine cannot take in time are dropped (counted), never queued.
Timestamps are the monotonic clock since the source started, because device timestamps are not
reliable across drivers. When the device disappears (USB unplugged, driver reset) the source tries to
reopen it with backoff and, if it does not come back, ends with one clear `SourceError`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from affectstream.engine.types import VideoFrame
from affectstream.streams.sources.base import SourceError, ThreadedSource
from affectstream.streams.sources.feed import Emitter

log = logging.getLogger("affectstream.streams.sources")


def device_label(device: int | str) -> str:
    return f"camera:{device}" if isinstance(device, int) else str(device)


class CameraSource(ThreadedSource):
    """Frames from an OpenCV `VideoCapture` (device index or path). Video only."""

    live = True

    def __init__(
        self,
        device: int | str,
        stream_id: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 4.0,
        queue_size: int = 4,
    ) -> None:
        super().__init__(stream_id)
        self.device = device
        self.what = device_label(device)
        self.width, self.height, self.fps = width, height, fps
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queue_size = queue_size

    def _missing_device(self) -> str | None:
        """On Linux a camera is a /dev/video* node; say so plainly when it is not there."""
        if isinstance(self.device, str):
            return None if Path(self.device).exists() else f"{self.device}: no such camera device"
        if sys.platform.startswith("linux") and not Path(f"/dev/video{self.device}").exists():
            return f"camera:{self.device}: no such camera (/dev/video{self.device} does not exist)"
        return None

    def _open(self):  # -> cv2.VideoCapture | None
        import cv2

        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            return None
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        return cap

    def _produce(self, emit: Emitter) -> None:
        missing = self._missing_device()
        if missing is not None:
            raise SourceError(missing)
        t0 = time.monotonic()
        index = 0
        failures = 0
        cap = self._open()
        if cap is None:
            raise SourceError(f"{self.what}: cannot open the camera (busy, or not a capture device)")
        try:
            while not emit.stopped:
                ok, image = cap.read() if cap is not None else (False, None)
                if ok and image is not None:
                    failures = 0
                    emit(VideoFrame(time.monotonic() - t0, image, index))
                    index += 1
                    self.stats.frames += 1
                    continue
                # The device stopped delivering: release it and try to get it back.
                if cap is not None:
                    cap.release()
                    cap = None
                    self.stats.errors += 1
                    log.warning("%s: camera stopped delivering frames; reconnecting", self.what)
                failures += 1
                if failures > self.max_retries:
                    raise SourceError(
                        f"{self.what}: camera disappeared and did not come back after {self.max_retries} attempts"
                    )
                if emit.wait(min(self.max_backoff, self.backoff * 2 ** (failures - 1))):
                    return
                if self._missing_device() is None:
                    cap = self._open()
                    if cap is not None:
                        self.stats.reconnects += 1
                        log.info("%s: camera reopened", self.what)
        finally:
            if cap is not None:
                cap.release()

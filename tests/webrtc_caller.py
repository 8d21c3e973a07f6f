"""A caller in its own process: connects to URL, sends the real face + speech, then waits forever.

tests/test_webrtc_security.py SIGKILLs it mid-call to play a caller whose machine vanished (no BYE,
no DTLS close, no more packets); the server must notice and tear the peer down by itself.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_webrtc import FaceVideoTrack, SpeechAudioTrack, call


async def main(url: str, stream: str) -> None:
    from affectstream.streams.web.ice import restrict_to_loopback

    restrict_to_loopback()
    caller = await call(url, [FaceVideoTrack(), SpeechAudioTrack()], stream=stream)
    await asyncio.wait_for(caller.opened.wait(), 20)
    print("connected", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

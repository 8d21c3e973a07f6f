"""A throwaway mosquitto on a free 127.0.0.1 port for the benches (tests use tests/fixtures_mqtt.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free 127.0.0.1 port (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mosquitto(prefix: str = "bench-mosq-") -> tuple[subprocess.Popen[bytes], int, Path]:
    """Start mosquitto bound to 127.0.0.1 only; returns the process, its port and its config folder.

    The folder and config are world-readable because mosquitto drops to its own user when started as root.
    """
    if shutil.which("mosquitto") is None:
        sys.exit("mosquitto is not installed: apt-get install mosquitto")
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix=prefix))
    conf = d / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    os.chmod(d, 0o755)
    os.chmod(conf, 0o644)
    p = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return p, port, d
        time.sleep(0.05)
    p.kill()
    sys.exit("mosquitto did not start")

#!/usr/bin/env bash
# Runs the whole test suite the way CI does. Browser (WebRTC) tests put themselves into a
# loopback-only network namespace (see tests/test_webrtc_browser.py), so no packet leaves 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
ruff check .
exec python3 -m pytest -q "$@"

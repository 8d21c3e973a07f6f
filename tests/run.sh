#!/usr/bin/env bash
# Runs the whole test suite the way CI does, in the virtual environment .ci/install.sh created. Browser
# (WebRTC) tests put themselves into a loopback-only network namespace (see tests/test_webrtc_browser.py),
# so no packet leaves 127.0.0.1. The layering contracts run as tests/test_architecture.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AFFECTSTREAM_VENV:-$PWD/.venv}
[ -x "$VENV/bin/python" ] && export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
ruff check .
exec python -m pytest -q "$@"

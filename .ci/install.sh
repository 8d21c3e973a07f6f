#!/usr/bin/env bash
# Sets up affectstream on Debian 12 / Python 3.11 (root or sudo): system packages, then the package in a
# virtual environment that this script creates (Debian's own python3 is "externally managed", PEP 668, so
# pip must never install into it). The `affectstream` command is linked onto PATH.
#   bash .ci/install.sh          runtime: run files, cameras, RTSP/UDP, mic, MQTT, reasoning LLM
#   bash .ci/install.sh --dev    + training, r1-omni, WebRTC browser tests, linters
# Environment: PYTHON (interpreter that creates the venv, default python3), AFFECTSTREAM_VENV (default
# .venv in the checkout), AFFECTSTREAM_BIN (where the command is linked, default /usr/local/bin as root,
# ~/.local/bin otherwise).
# torch is installed first and pinned (2.13.0, CPU): an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_PKGS="python3-venv mosquitto mosquitto-clients ffmpeg portaudio19-dev espeak-ng sox iproute2"
[ "$DEV" = 1 ] && APT_PKGS="$APT_PKGS chromium"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo ">> apt-get install$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

VENV=${AFFECTSTREAM_VENV:-$PWD/.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating virtual environment $VENV (${PYTHON:-python3})"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
$PY -m pip install -q --upgrade "pip>=24" setuptools wheel
echo ">> pip install torch==2.13.0 (CPU)"
$PY -m pip install -q "torch==2.13.0"
EXTRAS="export,llm,transcript,mic"
[ "$DEV" = 1 ] && EXTRAS="$EXTRAS,webrtc,train,omni,ray,metrics,dev"
# llama.cpp is built from source. Not -march=native: on CPUs that report AMX, a native build emits AMX
# tile instructions that sandboxes and some kernels refuse ("Illegal instruction", seen here); AVX2/FMA/F16C
# is portable across x86-64-v3 machines. A wheel cached from a native build must not be reused.
LLAMA_CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"}
# The portable wheel is kept in a folder named after the build flags, so a second virtual environment
# (a fresh clone, CI) installs it in seconds instead of compiling again; pip's own cache is bypassed.
if [ "$(uname -m)" = "x86_64" ] && ! $PY -c "import llama_cpp" 2>/dev/null; then
  WHEELS="${AFFECTSTREAM_HOME:-$HOME/.cache/affectstream}/wheels/llama-$(echo "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
  if ! ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    echo ">> building llama-cpp-python 0.3.36 from source (about 7 minutes on 2 cores, once; kept in $WHEELS)"
    mkdir -p "$WHEELS"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip wheel -q --no-cache-dir --no-deps -w "$WHEELS" "llama-cpp-python==0.3.36"
  fi
  $PY -m pip install -q "$WHEELS"/llama_cpp_python-0.3.36-*.whl
fi
echo ">> pip install -e .[$EXTRAS]"
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) $PY -m pip install -q -e ".[$EXTRAS]"

if [ "$(id -u)" -eq 0 ]; then BIN=${AFFECTSTREAM_BIN:-/usr/local/bin}; else BIN=${AFFECTSTREAM_BIN:-$HOME/.local/bin}; fi
mkdir -p "$BIN"
ln -sf "$VENV/bin/affectstream" "$BIN/affectstream"
echo ">> affectstream installed in $VENV, linked as $BIN/affectstream"
case ":$PATH:" in *":$BIN:"*) ;; *) echo ">> note: $BIN is not on PATH; run $VENV/bin/affectstream or add $BIN to PATH";; esac

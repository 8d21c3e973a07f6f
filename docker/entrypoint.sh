#!/bin/sh
# affectstream container entrypoint.
#   1. make sure the model profile exists in the data volume (baked into the image at build time;
#      linked, not copied, so the volume stays small);
#   2. on the first start on a given GPU, build TensorRT engines into the volume (cached by GPU,
#      TensorRT version, precision and shapes: later starts reuse them, a new GPU/TensorRT rebuilds);
#   3. exec the engine (PID 1 stays the engine, so `docker stop` reaches it).
# Other first arguments: see the routing below.
set -eu

: "${AFFECTSTREAM_HOME:=/data}"
: "${AFFECTSTREAM_ENGINE_DIR:=${AFFECTSTREAM_HOME}/engines}"
: "${AFFECTSTREAM_PROFILE:=lite}"
: "${AFFECTSTREAM_TRT_BUILD:=fp16}"   # fp16 | int8 | fp32 | off
: "${AFFECTSTREAM_CALIB:=/opt/affectstream/examples/sample.mp4}"
: "${AFFECTSTREAM_BAKED_HOME:=/opt/affectstream/home}"
BAKED="${AFFECTSTREAM_BAKED_HOME}/profiles/${AFFECTSTREAM_PROFILE}"
export AFFECTSTREAM_HOME AFFECTSTREAM_ENGINE_DIR

log() { printf '%s entrypoint: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

prepare_profile() {
    mkdir -p "${AFFECTSTREAM_HOME}/profiles" "${AFFECTSTREAM_ENGINE_DIR}"
    dest="${AFFECTSTREAM_HOME}/profiles/${AFFECTSTREAM_PROFILE}"
    if [ ! -e "${dest}/manifest.json" ] && [ -e "${BAKED}/manifest.json" ]; then
        log "using the ${AFFECTSTREAM_PROFILE} profile baked into the image"
        rm -rf "${dest}"
        ln -s "${BAKED}" "${dest}"
    fi
}

build_engines() {
    case "${AFFECTSTREAM_TRT_BUILD}" in
        off) log "TensorRT build disabled (AFFECTSTREAM_TRT_BUILD=off)"; return 0 ;;
        fp16) flags="--fp16" ;;
        int8) flags="--int8 --calib ${AFFECTSTREAM_CALIB}" ;;
        fp32) flags="" ;;
        *) log "AFFECTSTREAM_TRT_BUILD must be fp16, int8, fp32 or off (got ${AFFECTSTREAM_TRT_BUILD})"; exit 2 ;;
    esac
    if ! python3 -c "import tensorrt" 2>/dev/null; then
        log "tensorrt not importable: skipping engine build (runtime falls back to ONNX Runtime)"
        return 0
    fi
    log "building/validating TensorRT engines (${AFFECTSTREAM_TRT_BUILD}) in ${AFFECTSTREAM_ENGINE_DIR}"
    # A failed build is logged and the engine still starts: selection falls back with the reason.
    # shellcheck disable=SC2086
    if ! affectstream export tensorrt "${AFFECTSTREAM_PROFILE}" ${flags}; then
        log "engine build reported problems (see ${AFFECTSTREAM_ENGINE_DIR}/logs); continuing"
    fi
}

# Routing: run/serve start the engine (profile linked, engines built first); the other affectstream
# subcommands and options run the CLI (profile linked), so `docker run IMAGE report x.jsonl` works;
# health runs the health check; anything else (bash, python3 ...) is executed as is.
# tests/test_docker.py checks that every subcommand of the CLI is listed here.
case "${1:-run}" in
    run|serve)
        prepare_profile
        build_engines
        exec affectstream "$@"
        ;;
    models|export|report|-*)
        prepare_profile
        exec affectstream "$@"
        ;;
    health)
        exec python3 "$(dirname "$0")/healthcheck.py"
        ;;
    *)
        exec "$@"
        ;;
esac

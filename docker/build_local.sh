#!/usr/bin/env bash
# Builds the CPU image and a Debian-packaged Mosquitto image on a machine without image-registry access
# (what CI and tests/test_containers.py use). With Docker Hub access you never need this: plain
# `docker build -f docker/Dockerfile.cpu -t affectstream:cpu .` and the official eclipse-mosquitto do.
#
#   bash docker/build_local.sh            # local/debian:bookworm, affectstream:cpu, local/mosquitto:bookworm
#
# What it adds around `docker build`, each only when this machine needs it:
# - the base image from debootstrap (docker/build_local_base.sh), tag $BASE;
# - pip's CA bundle as the `pip_ca` build secret when pip here verifies against a custom one (PIP_CERT or
#   `pip config` global.cert: a TLS-intercepting proxy); it never enters a layer;
# - a torch CPU wheel from a local folder (TORCH_WHEELS, or pip's find-links) served on 127.0.0.1 for the
#   build's profile stage, when PyTorch's own index is out of reach.
# Everything builds with host networking (no Docker bridge). Environment: DOCKER (client, default
# Debian's /usr/bin/docker), BASE, CPU_TAG, MQTT_TAG, EXTRA_BUILD_ARGS (more `docker build` flags).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER DOCKER_BUILDKIT=1
BASE=${BASE:-local/debian:bookworm}
CPU_TAG=${CPU_TAG:-affectstream:cpu}
MQTT_TAG=${MQTT_TAG:-local/mosquitto:bookworm}
PY=${PYTHON:-python3}

bash docker/build_local_base.sh "$BASE"

args=(--network host --build-arg "BASE=$BASE")
ca=${PIP_CERT:-$("$PY" -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$ca" ] && [ -s "$ca" ]; then
  args+=(--secret "id=pip_ca,src=$ca")
fi

wheels=${TORCH_WHEELS:-}
if [ -z "$wheels" ]; then
  for d in ${PIP_FIND_LINKS:-} $("$PY" -m pip config get global.find-links 2>/dev/null || true); do
    if compgen -G "$d/torch-*+cpu-*.whl" >/dev/null; then wheels=$d; break; fi
  done
fi
server=""
if [ -n "$wheels" ]; then
  port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$PY" -m http.server "$port" --bind 127.0.0.1 --directory "$wheels" >/dev/null 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  args+=(--build-arg TORCH_INDEX= --build-arg "TORCH_FIND_LINKS=http://127.0.0.1:$port/")
  echo ">> torch CPU wheel served from $wheels on 127.0.0.1:$port"
fi

t0=$(date +%s)
# shellcheck disable=SC2086  # EXTRA_BUILD_ARGS is a list of flags
"$DOCKER" build "${args[@]}" ${EXTRA_BUILD_ARGS:-} -f docker/Dockerfile.cpu -t "$CPU_TAG" .
t1=$(date +%s)
"$DOCKER" build --network host --build-arg "BASE=$BASE" -f docker/Dockerfile.mosquitto -t "$MQTT_TAG" docker
t2=$(date +%s)
echo ">> built $CPU_TAG in $((t1 - t0)) s, $MQTT_TAG in $((t2 - t1)) s"
"$DOCKER" image inspect --format '{{.RepoTags}} {{.Size}} bytes' "$CPU_TAG" "$MQTT_TAG"

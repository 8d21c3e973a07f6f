#!/usr/bin/env bash
# A Docker engine for CI's container test (tests/test_containers.py), loopback-only:
#   bash docker/ci_daemon.sh start   install docker.io/debootstrap/docker-compose if missing, start dockerd
#   bash docker/ci_daemon.sh stop    stop the dockerd that `start` started (a daemon already running is left)
# dockerd runs without its default bridge, NAT or iptables rules (--bridge=none --iptables=false
# --ip-forward=false --ip-masq=false), so Docker never creates an address outside loopback; builds and
# containers use host networking and every service binds 127.0.0.1. A docker0 left by an earlier daemon
# is deleted first. When the engine cannot start, `start` says why and exits 0: the container test then
# skips with that reason (and CI's strict-skip rule reports it).
set -euo pipefail
PIDFILE=${AFFECTSTREAM_DOCKERD_PIDFILE:-/run/affectstream-ci-dockerd.pid}
LOG=${AFFECTSTREAM_DOCKERD_LOG:-/tmp/affectstream-ci-dockerd.log}
DOCKER=/usr/bin/docker  # Debian's client (BuildKit built in); another `docker` on PATH may lack buildx

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

start() {
  local missing="" p
  for p in docker.io debootstrap docker-compose; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo ">> apt-get install$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
  if $SUDO "$DOCKER" info >/dev/null 2>&1; then
    echo ">> a Docker engine is already running; using it"
    return 0
  fi
  if ip link show docker0 >/dev/null 2>&1; then $SUDO ip link delete docker0 || true; fi
  echo ">> starting dockerd (no bridge, no iptables; log: $LOG)"
  # shellcheck disable=SC2024  # the log is ours, not root's
  $SUDO nohup dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false >"$LOG" 2>&1 &
  echo $! | $SUDO tee "$PIDFILE" >/dev/null
  for _ in $(seq 1 60); do
    if $SUDO "$DOCKER" info >/dev/null 2>&1; then
      echo ">> dockerd up ($($SUDO "$DOCKER" version --format '{{.Server.Version}}'))"
      return 0
    fi
    sleep 0.5
  done
  echo ">> dockerd did not start within 30 s (tests/test_containers.py will skip); last log lines:"
  tail -n 5 "$LOG" || true
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  # Only our own daemon: stop it by pid and wait for it to finish (it stops its containers first).
  if $SUDO kill -0 "$pid" 2>/dev/null; then
    echo ">> stopping dockerd ($pid)"
    $SUDO kill -TERM "$pid"
    for _ in $(seq 1 60); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  $SUDO rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

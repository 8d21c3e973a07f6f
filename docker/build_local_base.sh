#!/usr/bin/env bash
# Builds the Debian 12 base image locally, for machines that cannot pull from an image registry
# (air-gapped CI, a private network with only a Debian mirror). Users with Docker Hub access never need
# this: the Dockerfiles default to the public `debian:bookworm-slim`.
#
#   bash docker/build_local_base.sh [TAG]        # default TAG: local/debian:bookworm
#   docker build --network host --build-arg BASE=local/debian:bookworm -f docker/Dockerfile.cpu .
#
# debootstrap's minbase variant (apt, dpkg, bash, coreutils: ~130 MB) is bootstrapped from the Debian mirror
# apt already uses on this machine (read from /etc/apt/sources.list{,.d}; override with DEBIAN_MIRROR) and
# imported as a single-layer image. Re-running is a no-op while the tag exists (FORCE=1 rebuilds).
# Needs root, debootstrap and a running Docker daemon (DOCKER: the client to use, default `docker`).
set -euo pipefail
TAG=${1:-local/debian:bookworm}
SUITE=${DEBIAN_SUITE:-bookworm}
DOCKER=${DOCKER:-docker}

if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo ">> $TAG exists (FORCE=1 to rebuild)"
  exit 0
fi

mirror() {
  # deb822 sources (Debian 12 default) first, then one-line sources; skip security/updates suites.
  local m=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    m=$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources | grep -v -- '-security' | head -n1)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
        /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(mirror)}

command -v debootstrap >/dev/null || { echo "debootstrap not installed (apt-get install debootstrap)" >&2; exit 2; }
ROOT=$(mktemp -d /tmp/affectstream-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo ">> debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || {
  tail -n 20 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"
# Same apt sources as the image's suite (updates + security), no caches, like the official slim image.
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security} $SUITE-security main
EOF
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
echo ">> docker import -> $TAG"
tar -C "$ROOT" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$TAG" >/dev/null
"$DOCKER" image inspect --format '{{.Id}} {{.Size}} bytes' "$TAG"

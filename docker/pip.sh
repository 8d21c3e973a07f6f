#!/bin/sh
# `pip` for image builds, behind a TLS-intercepting proxy too: when the build was given a CA bundle as the
# BuildKit secret `pip_ca` (never stored in a layer), pip verifies against it:
#   docker build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt ...
# Kept apart from install.sh so the llama.cpp compile stage, which needs only this, stays cached while the
# recipe changes.
set -eu
if [ -s /run/secrets/pip_ca ]; then
    export PIP_CERT=/run/secrets/pip_ca
fi
exec "${PYTHON:-python3}" -m pip "$@"

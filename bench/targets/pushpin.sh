#!/usr/bin/env bash
# Run Pushpin 1.36 (Debian package) in the foreground on private ports, for the benchmark.
# A thin wrapper around conformance/targets/pushpin.sh (decisions.md C1: every port and the ipc prefix
# moved, zurl started with its sockets in a short private folder), with the benchmark's defaults.
#
# usage: pushpin.sh WORKDIR CLIENT_PORT PUBLISH_PORT ZMQ_PULL ZMQ_SUB ZMQ_CMD
# env:   PUSHPIN_MESSAGE_RATE  [handler] message_rate; empty (default) leaves the key out,
#                              which Pushpin's code treats as unlimited. The shipped
#                              pushpin.conf has 2500 (deliveries per second).
#        PUSHPIN_MESSAGE_HWM   [handler] message_hwm (default 25000, as shipped)
#        PUSHPIN_LOG_LEVEL     [runner] log_level (default 1, warnings: the shipped 2 logs every request)
#        PUSHPIN_ROUTE         the single routes line (default `* test`, the built-in test target; the ws
#                              mode uses `* localhost:PORT,over_http` with bench/ws_backend.py on PORT)
#
# Execs pushpin, so the caller's PID is Pushpin's runner; SIGTERM to it stops everything.
set -euo pipefail

if [ $# -ne 6 ]; then
    echo "usage: $0 WORKDIR CLIENT_PORT PUBLISH_PORT ZMQ_PULL ZMQ_SUB ZMQ_CMD" >&2
    exit 2
fi
workdir=$1 client_port=$2 publish_port=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$workdir"
route=${PUSHPIN_ROUTE:-* test}
echo "$route" >"$workdir/routes.in"

export ZMQ_PORTS="$4,$5,$6"
export SIG_ISS=pushpin
export PUSHPIN_LOG_LEVEL=${PUSHPIN_LOG_LEVEL:-1}
export PUSHPIN_MESSAGE_RATE=${PUSHPIN_MESSAGE_RATE:-}
export PUSHPIN_RUN_TAG=b
# The backend port argument only names the config file's comment; the route line says where the backend is.
exec "$here/../../conformance/targets/pushpin.sh" "$workdir" "$client_port" "$publish_port" 0 \
    "bench-signing-key-of-at-least-32-bytes!!" "$workdir/routes.in"

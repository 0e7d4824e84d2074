#!/bin/sh
# HAProxy for Ray Serve's direct-ingress mode on a workstation, with every listener on loopback.
# Ray's HAProxy template binds its stats and Prometheus listeners on all interfaces and has no setting for it;
# Serve writes the config, then starts HAProxy with `-f <config>`. This rewrites the config's all-interface
# binds (`bind *:PORT`, `bind :PORT`) to 127.0.0.1, then runs the real binary (RECSYS_HAPROXY_BINARY).
# Used by serve_apps/local.py through RAY_SERVE_HAPROXY_BINARY_PATH; clusters do not need it.
set -eu
previous=""
for argument in "$@"; do
    if [ "$previous" = "-f" ]; then
        sed -i -E 's/^([[:space:]]*bind[[:space:]]+)(\*)?:([0-9]+)/\1127.0.0.1:\3/' "$argument"
    fi
    previous="$argument"
done
exec "$RECSYS_HAPROXY_BINARY" "$@"

#!/usr/bin/env bash
# abuse.sh measures how tollgate holds up when callers misbehave (issue 13):
# 256 concurrent 4 MiB CheckRequests, 10,000 concurrent streams, a flood at
# the receive limit, and 5,000 idle raw TCP connections, each against a
# fresh `tollgate serve` on loopback. It reports the server's peak RSS, a
# normal client's latency under each flood and whether health, the HTTP
# port, new connections and reloads still work (docs/operations.md).
# Arguments go to hack/abuse (-h lists them), e.g.
#   hack/abuse.sh -scenarios big,idle -duration 5s
#   hack/abuse.sh -tollgate /tmp/tollgate-main     # another build, to compare
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build
go build -o bin/abuse ./hack/abuse
exec bin/abuse -tollgate bin/tollgate "$@"

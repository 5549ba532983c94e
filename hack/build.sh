#!/usr/bin/env bash
# build.sh builds the tollgate binary the way the container image does:
# CGO_ENABLED=0 (a static binary that runs on distroless/static or scratch),
# -trimpath, stripped, with the version and commit linked in.
#
#   hack/build.sh [OUT]          # default bin/tollgate
#
# `make build`, the Dockerfile's build stage and test/packaging
# (TestBinaryIsStatic) all call this script, so the flags exist once.
# GOOS and GOARCH are honoured (the Dockerfile sets them for cross builds).
# VERSION and COMMIT default to `git describe` and the short commit.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-bin/tollgate}"
version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
commit="${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
pkg=github.com/tollgate-dev/tollgate/pkg/version

CGO_ENABLED=0 exec go build -trimpath \
	-ldflags "-s -w -X $pkg.Version=$version -X $pkg.Commit=$commit" \
	-o "$out" ./cmd/tollgate

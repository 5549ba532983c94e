#!/usr/bin/env bash
# loadtest.sh measures tollgate's CPU per Check against a bare grpc-go
# ext_authz server, with the memory and the Redis quota store, in one run
# (make loadtest; docs/loadtest.md explains the figures). It builds
# bin/tollgate and bin/loadtest-bare, installs ghz (pinned) into bin/ and
# redis-server (apt-get, when missing and possible), then runs
# hack/loadtest. Arguments go to hack/loadtest (-h lists them), e.g.
#   hack/loadtest.sh -duration 30s -scenarios bare,memory
set -euo pipefail
cd "$(dirname "$0")/.."

ghz_version=v0.120.0 # @latest resolves to a 2021 release
bin=$PWD/bin
mkdir -p "$bin"

if [[ ! -x $bin/ghz || ! -f $bin/.ghz-$ghz_version ]]; then
	echo "installing ghz $ghz_version into bin/"
	GOBIN=$bin go install "github.com/bojand/ghz/cmd/ghz@$ghz_version"
	touch "$bin/.ghz-$ghz_version"
fi
if ! command -v redis-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
	echo "installing redis-server with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends redis-server >/dev/null
	if command -v systemctl >/dev/null 2>&1; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
fi

make --no-print-directory build
go build -o "$bin/loadtest-bare" ./hack/loadtest/bare
go build -o "$bin/loadtest" ./hack/loadtest
exec "$bin/loadtest" -tollgate "$bin/tollgate" -bare "$bin/loadtest-bare" -ghz "$bin/ghz" "$@"

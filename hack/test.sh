#!/usr/bin/env bash
# test.sh installs what the tests need on a fresh machine (redis-server,
# controller-gen, the envtest control plane) and runs lint, the
# generated-files check and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# The proxy tests (test/proxies) run the real nginx and Caddy from Debian.
command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || need_apt+=(nginx)
command -v caddy >/dev/null 2>&1 || need_apt+=(caddy)
if ((${#need_apt[@]})); then
	echo "installing ${need_apt[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Tests start their own redis-server processes on free ports: a redis-server
# service of this machine (the one apt-get may just have started, too) is
# left alone, since this script did not start it.

# kube-apiserver and etcd for envtest; helm and kubectl for the chart and
# kustomize tests, and kube-controller-manager, kube-scheduler and kwok for
# `helm install --wait` (test/packaging); built from the Go module proxy
# into the git-ignored bin/envtest (or ENVTEST_BIN_DIR): 10 to 15 min on a
# fresh machine, instant once built. Tests that need them fail when CI is
# set and they are missing (internal/kubetest).
KUBEBUILDER_ASSETS="$(hack/envtest-tools.sh helm kubectl cluster)"
export KUBEBUILDER_ASSETS

make --no-print-directory lint
make --no-print-directory verify-generated
go test -p 2 -count=1 -timeout 20m ./...

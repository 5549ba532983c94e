#!/usr/bin/env bash
# Build the binaries that sigs.k8s.io/controller-runtime/pkg/envtest needs
# (kube-apiserver and etcd) from sources served by the Go module proxy, since
# prebuilt downloads (setup-envtest, release tarballs) cannot be reached here.
#
#   KUBEBUILDER_ASSETS=$(hack/envtest-tools.sh) go test ./...
#   hack/envtest-tools.sh helm        # also build bin/envtest/helm
#   hack/envtest-tools.sh kubectl     # also build bin/envtest/kubectl
#   hack/envtest-tools.sh cluster     # also kube-controller-manager, kube-scheduler
#                                     # and kwok (+ kwok-stages.yaml): pods that reach
#                                     # Running, simulated
#
# Binaries land in bin/envtest/ (override with ENVTEST_BIN_DIR). An existing
# binary whose --version matches the pinned version is reused, so reruns are
# instant. Throwaway build modules live in bin/.build/. Only the binary
# directory is printed on stdout; progress goes to stderr.
#
# Versions (override via environment):
#   KUBERNETES_VERSION  k8s.io/kubernetes tag; staging modules use v0.<minor>.<patch>
#   ETCD_VERSION        go.etcd.io/etcd/server/v3 tag
#   HELM_VERSION        helm.sh/helm/v3 or /v4 tag (only with the `helm` argument)
#   KWOK_VERSION        sigs.k8s.io/kwok tag (only with the `cluster` argument)
set -euo pipefail

KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ENVTEST_BIN_DIR:-$root/bin/envtest}"
build="$root/bin/.build"
mkdir -p "$out" "$build"
out="$(cd "$out" && pwd)"

want_helm=0 want_kubectl=0 want_cluster=0
for arg in "$@"; do
  case "$arg" in
    helm) want_helm=1 ;;
    kubectl) want_kubectl=1 ;;
    cluster) want_cluster=1 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "envtest-tools: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "envtest-tools: [$(date +%T)] $*" >&2; }

# One build at a time (parallel test jobs may all call this script).
if command -v flock >/dev/null; then
  exec 9>"$build/.lock"
  flock 9
fi

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod" GOWORK=off
# Use whatever go is on PATH; the throwaway modules below say `go 1.26.0`.

# has_version BIN LINE: one line of BIN --version is exactly LINE.
# (Output is captured first: with pipefail, grep -q closing the pipe early
# would fail the check with SIGPIPE.)
has_version() {
  local v
  [[ -x "$1" ]] && v="$("$1" --version 2>/dev/null)" && [[ $'\n'"$v"$'\n' == *$'\n'"$2"$'\n'* ]]
}

# build_kube_cmd NAME: build k8s.io/kubernetes/cmd/NAME (kube-apiserver,
# kubectl) at KUBERNETES_VERSION.
build_kube_cmd() {
  local name="$1" v="$KUBERNETES_VERSION" bin="$out/$1" want="Kubernetes $KUBERNETES_VERSION"
  # kubectl --version is not a flag; kubectl version --client prints "Client Version: v1.37.2".
  [[ "$name" == kubectl ]] && want="Client Version: $v"
  if kube_has_version "$name" "$bin" "$want"; then
    log "$name $v already present"; return
  fi
  local staging="v0.${v#v1.}" # v1.37.2 -> v0.37.2
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local dir="$build/$name-$v"
  mkdir -p "$dir"
  log "building $name $v (staging modules $staging) in $dir"
  if [[ ! -f "$dir/go.mod" ]]; then
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces
    # them with ./staging/src/...; a dependent module must map each one to its
    # published release instead.
    local kmod
    kmod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$v" |
      sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    {
      echo "module tollgate.local/envtest-$name"
      echo
      echo "go 1.26.0"
      echo
      echo "godebug default=go1.26"
      echo
      echo "require k8s.io/kubernetes $v"
      echo
      sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/[a-z0-9-]*$#replace \1 => \1 '"$staging"'#p' "$kmod"
    } >"$dir/go.mod.tmp"
    grep -q '^replace k8s.io/apiserver ' "$dir/go.mod.tmp" ||
      { log "could not read staging replaces from $kmod"; exit 1; }
    # The tools-import file keeps `go mod tidy` honest about what we build.
    printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$name" >"$dir/tools.go"
    mv "$dir/go.mod.tmp" "$dir/go.mod"
    (cd "$dir" && go mod tidy >&2) || { rm -f "$dir/go.mod" "$dir/go.sum"; exit 1; }
  fi
  local pkg=k8s.io/component-base/version cgo=k8s.io/client-go/pkg/version
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ld="-s -w"
  for p in "$pkg" "$cgo"; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$bin.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$bin.tmp" "$bin"
  kube_has_version "$name" "$bin" "$want" || { log "built $name does not report $v"; exit 1; }
}

kube_has_version() {
  local name="$1" bin="$2" want="$3" v
  if [[ "$name" == kubectl ]]; then
    [[ -x "$bin" ]] && v="$("$bin" version --client 2>/dev/null)" && [[ $'\n'"$v"$'\n' == *$'\n'"$want"$'\n'* ]]
  else
    has_version "$bin" "$want"
  fi
}

build_etcd() {
  local v="$ETCD_VERSION" bin="$out/etcd"
  if has_version "$bin" "etcd Version: ${v#v}"; then
    log "etcd $v already present"; return
  fi
  local dir="$build/etcd-$v"
  mkdir -p "$dir"
  log "building etcd $v in $dir"
  # go install go.etcd.io/etcd/v3@... is not possible: that module has replace
  # directives (and no 3.7 tag is served). The binary's main is one line.
  cat >"$dir/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  if [[ ! -f "$dir/go.mod" ]]; then
    printf 'module tollgate.local/envtest-etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$v" >"$dir/go.mod"
    (cd "$dir" && go mod tidy >&2) || { rm -f "$dir/go.mod" "$dir/go.sum"; exit 1; }
  fi
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .)
  mv "$bin.tmp" "$bin"
  has_version "$bin" "etcd Version: ${v#v}" || { log "built etcd does not report $v"; exit 1; }
}

build_helm() {
  local v="$HELM_VERSION" bin="$out/helm"
  if [[ -x "$bin" && "$("$bin" version --template '{{.Version}}' 2>/dev/null)" == "$v" ]]; then
    log "helm $v already present"; return
  fi
  local major="${v%%.*}"
  log "building helm $v"
  # helm's go.mod has no replace directives, so go install works directly.
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$v" \
    "helm.sh/helm/$major/cmd/helm@$v"
  [[ "$("$bin" version --template '{{.Version}}' 2>/dev/null)" == "$v" ]] ||
    { log "built helm does not report $v"; exit 1; }
}

# build_kwok: sigs.k8s.io/kwok's go.mod has no replace directives, so go
# install works directly. kwok simulates nodes and the kubelet: pods bound
# to its nodes go Running and Ready without containers.
build_kwok() {
  local v="$KWOK_VERSION" bin="$out/kwok" stages="$out/kwok-stages.yaml"
  # The module version is in the binary's build information.
  if [[ -x "$bin" && -s "$stages" ]] && go version -m "$bin" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+sigs\.k8s\.io/kwok[[:space:]]+$v[[:space:]]"; then
    log "kwok $v already present"; return
  fi
  log "building kwok $v"
  GOBIN="$out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  # kwok does nothing without stages (how simulated nodes and pods change
  # status): take the "fast" ones of the same release, for `kwok --config`.
  local dir
  dir="$(go mod download -json "sigs.k8s.io/kwok@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  local f first=1
  : >"$stages.tmp"
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    (( first )) || echo "---" >>"$stages.tmp"
    first=0
    cat "$dir/kustomize/stage/$f" >>"$stages.tmp"
  done
  mv "$stages.tmp" "$stages"
}

build_kube_cmd kube-apiserver
build_etcd
if (( want_helm )); then build_helm; fi
if (( want_kubectl )); then build_kube_cmd kubectl; fi
if (( want_cluster )); then
  build_kube_cmd kube-controller-manager
  build_kube_cmd kube-scheduler
  build_kwok
fi
echo "$out"

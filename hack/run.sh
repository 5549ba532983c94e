#!/usr/bin/env bash
# run.sh serves config/samples on this machine with nothing else installed:
# a development signing key (generated on first run in .tollgate/), its
# public JWKS at http://127.0.0.1:3000/api/auth/jwks (where the sample's
# Better Auth preset fetches keys), and `tollgate serve` with the memory
# quota store. `make run` builds bin/tollgate first.
#
# Extra arguments go to `tollgate serve`; so do TOLLGATE_* variables
# (TOLLGATE_HTTP_ADDR=:5002 make run). Every port is checked before
# anything starts, and the banner is printed once the server listens.
# SIGTERM or SIGINT to this script (make passes SIGTERM to it; Ctrl-C
# reaches the whole process group) stops the server gracefully, then the
# JWKS server: nothing is left running. RUN_JWKS_ADDR moves the JWKS server
# (tests; the sample policy then cannot fetch its keys).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin/tollgate
key=.tollgate/dev-key.json
jwks_addr=${RUN_JWKS_ADDR:-127.0.0.1:3000}

if [[ ! -x $bin ]]; then
	echo "run.sh: $bin is missing: run 'make run' (or 'make build' first)" >&2
	exit 1
fi

# The addresses serve will listen on: its defaults, then TOLLGATE_*_ADDR,
# then the arguments (as serve itself resolves them).
declare -A addr=([grpc]=:50051 [http]=:5001 [metrics]=:8080 [health]=:8081)
for name in grpc http metrics health; do
	var="TOLLGATE_${name^^}_ADDR"
	if [[ -n ${!var+set} ]]; then addr[$name]=${!var}; fi
done
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
	case ${args[i]} in
	--grpc-addr=* | --http-addr=* | --metrics-addr=* | --health-addr=*)
		name=${args[i]%%=*} && name=${name#--} && addr[${name%-addr}]=${args[i]#*=} ;;
	--grpc-addr | --http-addr | --metrics-addr | --health-addr)
		name=${args[i]#--} && addr[${name%-addr}]=${args[i + 1]:-} && i=$((i + 1)) ;;
	esac
done

# in_use reports whether something accepts connections on host:port (an
# empty host is this machine). Port 0 and an empty address are never in use.
in_use() {
	local host=${1%:*} port=${1##*:}
	[[ -n $1 && $port != 0 ]] || return 1
	host=${host#[} && host=${host%]}
	[[ -n $host && $host != 0.0.0.0 && $host != :: ]] || host=127.0.0.1
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

taken=()
for name in grpc http metrics health; do
	if in_use "${addr[$name]}"; then
		taken+=("  ${addr[$name]} (--$name-addr, TOLLGATE_${name^^}_ADDR)")
	fi
done
if in_use "$jwks_addr"; then
	taken+=("  $jwks_addr (the development JWKS server the sample policy fetches keys from)")
fi
if ((${#taken[@]})); then
	{
		echo "run.sh: these addresses are in use (is another 'make run' or tollgate running?):"
		printf '%s\n' "${taken[@]}"
		echo "Stop what holds them, or choose other ports, e.g. TOLLGATE_HTTP_ADDR=:5002 make run"
	} >&2
	exit 1
fi

if [[ ! -f $key ]]; then
	"$bin" token keygen --key "$key"
fi

jwks_pid= serve_pid=
cleanup() {
	for pid in $serve_pid $jwks_pid; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
# Passed on to the server (the JWKS server follows in cleanup). Background
# jobs of a script start with SIGINT ignored; tollgate catches it anyway.
trap 'if [[ -n $serve_pid ]]; then kill -TERM "$serve_pid" 2>/dev/null || true; else exit 143; fi' TERM INT HUP

"$bin" token serve-jwks --key "$key" --addr "$jwks_addr" &
jwks_pid=$!

# wait_listening waits until addr accepts connections, for at most 10 s;
# it fails as soon as process pid has exited.
wait_listening() {
	local pid=$1 addr=$2
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		in_use "$addr" && return 0
		sleep 0.1
	done
	return 1
}

if ! wait_listening "$jwks_pid" "$jwks_addr"; then
	echo "run.sh: 'tollgate token serve-jwks' failed to listen on $jwks_addr" >&2
	exit 1
fi

# --forward-auth request: the curl commands below ask tollgate directly, so
# the request line is the request to authorize (as Envoy's HTTP ext_authz
# sends it). Behind nginx, Traefik or Caddy, use original or forwarded.
"$bin" serve --policy-dir config/samples --forward-auth request --log-format text "$@" &
serve_pid=$!

# The banner comes once the server listens (on the first of these it has).
for name in health http grpc metrics; do
	a=${addr[$name]}
	[[ -n $a && ${a##*:} != 0 ]] || continue
	wait_listening "$serve_pid" "$a" || true
	break
done

# url prints how to reach addr from this machine.
url() {
	local host=${1%:*}
	[[ -n $host && $host != 0.0.0.0 && $host != "[::]" ]] || host=localhost
	echo "$host:${1##*:}"
}

if kill -0 "$serve_pid" 2>/dev/null; then
	http=$(url "${addr[http]}")
	cat <<EOF

tollgate is serving config/samples (Ctrl-C stops it):
  HTTP authorization  http://$http    gRPC ext_authz  $(url "${addr[grpc]}")
  metrics             http://$(url "${addr[metrics]}")/metrics
  health              http://$(url "${addr[health]}")/healthz, /readyz

Try it from another terminal, in this directory:
  TOKEN=\$(bin/tollgate token --sub alice)
  curl -i -H "Authorization: Bearer \$TOKEN" http://$http/api/users/alice/tasks   # 200
  curl -i -H "Authorization: Bearer \$TOKEN" http://$http/api/users/bob/tasks     # 403
  curl -i http://$http/api/users/alice/tasks                                     # 401
  curl -i http://$http/api/health                                                # 200, no token
  bin/tollgate check --policy-dir config/samples --path /api/users/bob/tasks --token "\$TOKEN"

EOF
fi

# wait returns early when a trapped signal arrives: wait again until the
# server has finished its graceful shutdown, and exit with its status.
status=0
while :; do
	wait "$serve_pid" && status=0 || status=$?
	kill -0 "$serve_pid" 2>/dev/null || break
done
serve_pid=
exit "$status"

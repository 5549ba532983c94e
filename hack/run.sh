#!/usr/bin/env bash
# run.sh serves config/samples on this machine with nothing else installed:
# a development signing key (generated on first run in .tollgate/), its
# public JWKS at http://127.0.0.1:3000/api/auth/jwks (where the sample's
# Better Auth preset fetches keys), and `tollgate serve` with the memory
# quota store in the foreground. `make run` builds bin/tollgate first.
# Extra arguments go to `tollgate serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=bin/tollgate
key=.tollgate/dev-key.json
jwks_addr=127.0.0.1:3000

if [[ ! -x $bin ]]; then
	echo "run.sh: $bin is missing: run 'make run' (or 'make build' first)" >&2
	exit 1
fi
if [[ ! -f $key ]]; then
	"$bin" token keygen --key "$key"
fi

"$bin" token serve-jwks --key "$key" --addr "$jwks_addr" &
jwks_pid=$!
# serve-jwks stops gracefully on SIGTERM. (Background jobs of a script
# ignore SIGINT, so Ctrl-C reaches only the server; this trap stops it.)
trap 'kill "$jwks_pid" 2>/dev/null || true; wait "$jwks_pid" 2>/dev/null || true' EXIT

# Wait for the JWKS server, so the first key fetch succeeds; give up if it
# died (port 3000 taken, for example).
for _ in $(seq 100); do
	if ! kill -0 "$jwks_pid" 2>/dev/null; then
		echo "run.sh: 'tollgate token serve-jwks' failed; is $jwks_addr in use?" >&2
		exit 1
	fi
	if (exec 3<>"/dev/tcp/${jwks_addr%:*}/${jwks_addr#*:}") 2>/dev/null; then
		break
	fi
	sleep 0.1
done

cat <<'EOF'

tollgate is serving config/samples (Ctrl-C stops it):
  HTTP authorization  http://localhost:5001    gRPC ext_authz  localhost:50051
  metrics             http://localhost:8080/metrics
  health              http://localhost:8081/healthz, /readyz

Try it from another terminal, in this directory:
  TOKEN=$(bin/tollgate token --sub alice)
  curl -i -H "Authorization: Bearer $TOKEN" http://localhost:5001/api/users/alice/tasks   # 200
  curl -i -H "Authorization: Bearer $TOKEN" http://localhost:5001/api/users/bob/tasks     # 403
  curl -i http://localhost:5001/api/users/alice/tasks                                     # 401
  curl -i http://localhost:5001/api/health                                                # 200, no token
  bin/tollgate check --policy-dir config/samples --path /api/users/bob/tasks --token "$TOKEN"

EOF

# --forward-auth request: the curl commands above ask tollgate directly, so
# the request line is the request to authorize (as Envoy's HTTP ext_authz
# sends it). Behind nginx, Traefik or Caddy, use original or forwarded.
"$bin" serve --policy-dir config/samples --forward-auth request --log-format text "$@"

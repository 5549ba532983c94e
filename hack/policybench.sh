#!/usr/bin/env bash
# policybench.sh measures tollgate with many policies in files (make
# bench-policies; docs/policy-scale.md explains the figures): start to
# Ready, one changed file to applied, idle CPU and RSS of `tollgate serve`
# with 10,000 generated AuthPolicies (hack/policybench), then the cost of a
# Check at 10,000 policies against 10 in one in-process benchmark run.
# Arguments go to hack/policybench (-h lists them), e.g.
#   hack/policybench.sh -n 1000 -idle 10s
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory build
go run ./hack/policybench -tollgate bin/tollgate "$@"
echo
echo "Check cost, 10,000 policies vs 10 (large/small is the ratio; goal <= 1.10):"
go test -run '^$' -bench 'BenchmarkCheckAtScale' -benchtime 3s -count 3 ./pkg/policyset | grep -E '^Benchmark'

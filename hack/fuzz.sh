#!/usr/bin/env bash
# fuzz.sh runs every fuzz target (func Fuzz... in a *_test.go file) of the
# module, one after the other, each for the duration given as $1 (default
# 60s; any -fuzztime value, e.g. 30s or 10000x). go test writes a failing
# input to the package's testdata/fuzz/<Target>/: commit it as a regression
# seed. Exits non-zero when any target fails, after running all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${1:-60s}"

# One "<package dir> <FuzzName>" per line. Files under testdata/ and vendor/
# are not packages of the module.
targets="$(git ls-files --cached --others --exclude-standard -- '*_test.go' |
	grep -Ev '(^|/)(testdata|vendor)/' |
	xargs -r grep -HoE '^func Fuzz[A-Za-z0-9_]*\(' |
	sed -E 's#^(.*/)?[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#./\1 \2#; s#/ # #' |
	sort -u)"

if [[ -z "$targets" ]]; then
	echo "fuzz.sh: no fuzz targets found"
	exit 0
fi

failed=()
while read -r dir name; do
	echo "=== fuzz ${dir} ${name} for ${fuzztime}"
	if ! go test "$dir" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 1; then
		failed+=("${dir} ${name}")
	fi
done <<<"$targets"

if ((${#failed[@]})); then
	printf 'fuzz.sh: failed: %s\n' "${failed[@]}" >&2
	exit 1
fi

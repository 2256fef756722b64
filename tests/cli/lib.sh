# Shared helpers for the command-line tests. Each test is a bash script run by ctest with PARTITA (the binary),
# ZOO (the generated model zoo), PYTHON (Debian's python3 with torch) and SRC (the source tree) set.
set -euo pipefail
: "${PARTITA:?}" "${ZOO:?}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# expect_error "substring" cmd...: the command must exit non-zero with exactly one stderr line containing substring.
expect_error() {
  local want=$1; shift
  local rc=0
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  local lines; lines=$(wc -l <"$WORK/err")
  if [ "$rc" -eq 0 ]; then fail "expected failure: $*"; return; fi
  if [ "$rc" -ge 128 ]; then fail "crashed (rc=$rc): $*"; return; fi
  if [ "$lines" -ne 1 ]; then fail "expected one stderr line, got $lines: $* :: $(head -c 600 "$WORK/err")"; return; fi
  grep -qF -- "$want" "$WORK/err" || fail "stderr lacks '$want': $(cat "$WORK/err")"
}
json_get() { "$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {'d': d}))" "$@"; }
finish() {
  if [ "$failures" -ne 0 ]; then echo "$failures failure(s)" >&2; exit 1; fi
  echo "ok"
}

# shellcheck shell=bash disable=SC2034 # its variables are read by the files that source it
# Output, timing, the results table and polling for tests/e2e/run and tests/run-demo.
# Sourced, never executed.

E2E_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SILO_ROOT="$(cd "$E2E_LIB/../../.." && pwd)"

RESULTS=()      # one printed row per check: status, seconds, title, detail
FAILED=0
PHASES=()       # one printed row per timed phase
CHECK_DETAIL="" # a check function may leave one line here for its row
CHECK_STATUS="" # ... and N/A here when the cluster cannot show what it checks

say() { printf '    %s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
indent() { sed 's/^/      /'; }

# seconds_since <$EPOCHREALTIME of the start>
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# record <PASS|FAIL|N/A> <seconds> <title> [detail]: adds a row to the results table.
record() {
  local status="$1" took="$2" title="$3" detail="${4:-}"
  [[ "$status" == FAIL ]] && FAILED=$((FAILED + 1))
  RESULTS+=("$(printf '%-4s %7s s  %s%s' "$status" "$took" "$title" "${detail:+ — $detail}")")
}

# check <title> <function> [args...]: runs one check, prints its outcome and seconds and
# records its row. The function's exit status decides PASS or FAIL, unless it set
# CHECK_STATUS=N/A (the cluster cannot show it; the row says why in CHECK_DETAIL).
check() {
  local title="$1" started="$EPOCHREALTIME" status; shift
  CHECK_DETAIL="" CHECK_STATUS=""
  step "$title"
  if "$@"; then status=PASS; else status=FAIL; fi
  [[ "$CHECK_STATUS" == N/A ]] && status=N/A
  local took; took="$(seconds_since "$started")"
  say "$status (${took} s)${CHECK_DETAIL:+: $CHECK_DETAIL}"
  record "$status" "$took" "$title" "$CHECK_DETAIL"
  [[ "$status" != FAIL ]]
}

# timed_phase <title> <function> [args...]: runs a step that is not a check and keeps its
# seconds for the timings table; returns the step's status.
timed_phase() {
  local title="$1" started="$EPOCHREALTIME" code=0; shift
  "$@" || code=$?
  PHASES+=("$(printf '%7s s  %s%s' "$(seconds_since "$started")" "$title" "$( ((code == 0)) || echo ' (failed)')")")
  return "$code"
}

print_results() {
  local heading="$1"
  step "$heading"
  printf '    %-4s %9s  %s\n' RESULT SECONDS CHECK
  printf '    %s\n' "${RESULTS[@]}"
  if ((${#PHASES[@]} > 0)); then
    step "Timings"
    printf '    %s\n' "${PHASES[@]}"
  fi
}

# wait_for <seconds> <description> <command...>: polls the command (every half second) until
# it succeeds. For states with no condition to `kubectl wait` on.
wait_for() {
  local timeout="$1" description="$2" deadline; shift 2
  deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      [[ -n "$description" ]] && say "TIMEOUT after ${timeout} s: $description"
      return 1
    fi
    sleep 0.5
  done
}

# holds <description> <command...>: says whether the command succeeds (its output dropped).
holds() {
  local description="$1"; shift
  if "$@" >/dev/null 2>&1; then say "ok: $description"; else say "WRONG: $description"; return 1; fi
}

# require_tools <tool...>: each must be on PATH.
require_tools() {
  local tool missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  ((${#missing[@]} == 0)) && return 0
  echo "missing on PATH: ${missing[*]}" >&2
  return 1
}

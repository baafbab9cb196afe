# shellcheck shell=bash
# Step helpers sourced by infra/images.sh and infra/lambda-runtime.sh. The caller sets
# STEP_PREFIX (the tag of its messages) and LOG (its log file) before sourcing.

say() { printf '[%s] %s\n' "$STEP_PREFIX" "$*"; }

STEP=setup
# fail MESSAGE: name the step and the log, show the end of the log, exit non-zero.
fail() {
  printf '\n[%s] ERROR during step "%s": %s\n[%s] log file: %s\n' "$STEP_PREFIX" "$STEP" "$1" "$STEP_PREFIX" "$LOG" >&2
  if [[ -s $LOG ]]; then
    printf -- '----- last lines of %s -----\n' "$LOG" >&2
    tail -n 30 "$LOG" >&2 || true
    printf -- '-----\n' >&2
  fi
  exit 1
}

# run STEP CMD...: log the step, run CMD with its output appended to the log.
run() {
  STEP=$1
  shift
  printf '\n=== %s: %s\n' "$STEP" "$*" >>"$LOG"
  "$@" >>"$LOG" 2>&1 </dev/null || fail "command failed: $*"
}

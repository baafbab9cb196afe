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

# force_option SCRIPT HELP_END [ARG]: FORCE=1 for --force, FORCE=0 for no argument; -h/--help
# prints SCRIPT's header comment (lines 2 to HELP_END) and exits 0; anything else exits 2.
force_option() {
  local script=$1 help_end=$2
  FORCE=0
  case ${3:-} in
    "") ;;
    --force) FORCE=1 ;;
    -h | --help)
      sed -n "2,${help_end}p" "$script" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      printf 'usage: %s [--force]\n' "$0" >&2
      exit 2
      ;;
  esac
}

# import_tree ROOT IMAGE CHANGE...: docker import the tree ROOT as IMAGE, each CHANGE a
# Dockerfile instruction (--change); the image IMAGE named before, if another, is removed.
import_tree() {
  local root=$1 image=$2 change old_id new_id changes=()
  shift 2
  for change in "$@"; do changes+=(--change "$change"); done
  old_id=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  tar --numeric-owner -C "$root" -cf - . | docker import "${changes[@]}" - "$image" >>"$LOG" 2>&1 ||
    fail "docker import failed"
  new_id=$(docker image inspect -f '{{.Id}}' "$image")
  if [[ -n $old_id && $old_id != "$new_id" ]]; then
    docker image rm "$old_id" >>"$LOG" 2>&1 </dev/null || true
  fi
}

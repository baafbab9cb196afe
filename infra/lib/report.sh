# shellcheck shell=bash
# Messages of the scripts that run a command per verb (infra/deploy.sh, infra/contract/contract.sh).
# The caller sets REPORT_PREFIX (the tag of its messages) and may set REPORT_TAIL (how many lines
# of a failed command's log to show, default 40) before sourcing.

say() { printf '[%s] %s\n' "$REPORT_PREFIX" "$*"; }

# fail MESSAGE [LOGFILE]: say what failed, show the end of LOGFILE if there is one, exit 1.
fail() {
  printf '[%s] ERROR: %s\n' "$REPORT_PREFIX" "$1" >&2
  if [[ -n ${2:-} && -f $2 ]]; then
    printf -- '----- last lines of %s -----\n' "$2" >&2
    tail -n "${REPORT_TAIL:-40}" "$2" >&2
    printf -- '-----\n[%s] full log: %s\n' "$REPORT_PREFIX" "$2" >&2
  fi
  exit 1
}

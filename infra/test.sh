#!/usr/bin/env bash
# `make test`: every service, the images, lint, the deployment and every test, in phases; phases
# that do not depend on each other run side by side (an I/O-bound one beside a CPU-bound one).
#
#   infra/test.sh            run every phase, then print a table of their wall times
#
# Each phase writes its output to $MECAPY_RUN_DIR/logs/test-<phase>.log; a failing phase prints
# the end of its log and stops the run (the phases beside it are finished first). The order:
#
#   services                    infra/services.sh up
#   images | lint               the compute images (debootstrap, I/O)  beside  fmt, clippy, template lint
#   build                       test databases cleaned, migrations, stager image, Lambda runtime, sam build
#   deploy | test-build         samlocal deploy and the console  beside  cargo test --no-run
#   tests | e2e                 the in-process tests  beside  the end-to-end tests on the deployed stack
#   contract                    schemathesis over openapi.yaml against the stack
#   browser                     the web console in chromium
#
# The end-to-end tests redeploy the stack in one of their cases, so contract and browser run after
# them. Cargo builds for the host triple (CARGO_BUILD_TARGET, set by the Makefile) so that sam
# build, the stager, the tests and clippy's dependencies share one target directory.

set -Euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
LOG_DIR=$RUN_DIR/logs
TEST_THREADS=${TEST_THREADS:-8}
cd "$REPO_DIR"
mkdir -p "$LOG_DIR"

case ${1:-} in
"") ;;
-h | --help)
  sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
  ;;
*)
  printf 'usage: %s\n' "$0" >&2
  exit 2
  ;;
esac

START=$SECONDS
TABLE=()

say() { printf '[test %4d s] %s\n' "$((SECONDS - START))" "$*"; }

table() {
  printf '\n[test] phases (wall time; side-by-side phases overlap):\n'
  printf '  %-12s %6s  %s\n' phase seconds status
  local row
  for row in "${TABLE[@]}"; do
    # shellcheck disable=SC2086
    printf '  %-12s %6s  %s\n' $row
  done
  printf '  %-12s %6s\n' total "$((SECONDS - START))"
}

# phase NAME FUNCTION: runs FUNCTION with its output in the phase's log; records its time.
phase() {
  local name=$1 fn=$2 log=$LOG_DIR/test-$1.log t0=$SECONDS rc=0
  : >"$log"
  "$fn" >>"$log" 2>&1 </dev/null || rc=$?
  printf '%s %s %s\n' "$name" "$((SECONDS - t0))" "$([[ $rc == 0 ]] && echo ok || echo "FAILED($rc)")" >"$LOG_DIR/test-$name.status"
  return "$rc"
}

# together NAME...: runs the phases side by side (each NAME is also its function, with - as _),
# then fails, showing each failed phase's log, when any of them failed.
together() {
  local name pids=() failed=() i=0
  say "$(printf '%s | ' "$@" | sed 's/ | $//')"
  for name in "$@"; do
    phase "$name" "${name//-/_}" &
    pids+=($!)
  done
  for name in "$@"; do
    wait "${pids[$i]}" || failed+=("$name")
    i=$((i + 1))
    TABLE+=("$(cat "$LOG_DIR/test-$name.status")")
  done
  ((${#failed[@]} == 0)) && return 0
  for name in "${failed[@]}"; do
    printf '\n[test] phase %s failed. Last lines of %s:\n' "$name" "$LOG_DIR/test-$name.log" >&2
    printf -- '-----\n' >&2
    tail -n 200 "$LOG_DIR/test-$name.log" >&2
    printf -- '-----\n' >&2
  done
  table
  printf '\n[test] FAILED in phase %s (logs in %s/test-*.log)\n' "${failed[*]}" "$LOG_DIR" >&2
  exit 1
}

# ------------------------------------------------------------------------------------ phases

services() { infra/services.sh up; }

images() { infra/images.sh; }

# A phase's steps are chained with &&: a step that fails fails its phase (set -e does not hold
# inside a function whose status is tested).
lint() {
  cargo fmt --all -- --check &&
    cargo clippy --workspace --all-targets --all-features -- -D warnings &&
    infra/deploy.sh lint &&
    infra/contract/contract.sh lint &&
    infra/deny.sh check
}

# migrate and the stager are built with the workspace's features (no -p), as sam build builds
# each function (`cargo build --bin <function>`): the dependencies are compiled once for all.
build() {
  # A test database another session still uses is left for a later run.
  make --no-print-directory clean-test-dbs || echo "some test databases of earlier runs are in use: left"
  cargo run --quiet --bin migrate &&
    infra/stager-image.sh &&
    infra/lambda-runtime.sh &&
    infra/deploy.sh tools &&
    infra/deploy.sh build
}

deploy() { infra/deploy.sh deploy; }

# The end-to-end crate's own unit tests resolve its features alone: built here, run in e2e.
test_build() {
  cargo test --workspace --all-features --no-run &&
    cargo test -p mecapy-e2e --all-features --lib --no-run
}

# Everything but the end-to-end crate, which runs beside it.
tests() { cargo test --workspace --all-features --exclude mecapy-e2e --no-fail-fast -- --test-threads "$TEST_THREADS"; }

# The end-to-end tests (infra/e2e/tests/stack.rs) on the deployed stack, then the least-privilege
# test over the AWS calls they made (infra/e2e/tests/least_privilege.rs). The same package set and
# features as the other run, so nothing is compiled again.
e2e() {
  cargo test --workspace --all-features --test stack -- --test-threads "$TEST_THREADS" &&
    cargo test --workspace --all-features --test least_privilege &&
    cargo test -p mecapy-e2e --all-features --lib
}

contract() { infra/contract/contract.sh test; }

browser() { infra/browser.sh test; }

together services
together images lint
together build
together deploy test-build
together tests e2e
together contract
together browser
table
say "make test: every phase passed"

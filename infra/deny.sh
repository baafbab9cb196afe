#!/usr/bin/env bash
# The Rust dependencies, checked against infra/deny.toml by cargo-deny.
#
#   infra/deny.sh check   licences, bans (duplicates without a stated reason, crates we refuse)
#                         and sources (crates.io only): offline, part of `make lint` and `make test`
#   infra/deny.sh audit   vulnerability advisories (cargo-deny's advisory database), `npm audit`
#                         of web/ and infra/contract/, and `pip-audit` of the pinned Python tools:
#                         these need the internet; offline they say so and exit 1 (`make audit`)
#
# cargo-deny is built from the registry once per version under $MECAPY_HOME (a few minutes the
# first time).

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
LOG_DIR=$RUN_DIR/logs
CARGO_DENY_VERSION=0.20.2
CARGO_DENY=$MECAPY_HOME/cargo-deny-$CARGO_DENY_VERSION/bin/cargo-deny
CONFIG=$REPO_DIR/infra/deny.toml
PIP_AUDIT_VERSION=2.10.1
UV=$MECAPY_HOME/uv-0.13.9/bin/uv
export UV_CACHE_DIR=${UV_CACHE_DIR:-$MECAPY_HOME/cache/uv} UV_NO_PROGRESS=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never

REPORT_PREFIX=deny
# shellcheck source=infra/lib/report.sh
. "$REPO_DIR/infra/lib/report.sh"

install() {
  [[ -x $CARGO_DENY ]] && return 0
  mkdir -p "$LOG_DIR"
  local log=$LOG_DIR/install-cargo-deny-$CARGO_DENY_VERSION.log
  say "building cargo-deny $CARGO_DENY_VERSION once (log $log)"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked \
    --root "$MECAPY_HOME/cargo-deny-$CARGO_DENY_VERSION.tmp" >"$log" 2>&1 ||
    fail "cargo install cargo-deny $CARGO_DENY_VERSION failed" "$log"
  rm -rf "$MECAPY_HOME/cargo-deny-$CARGO_DENY_VERSION"
  mv "$MECAPY_HOME/cargo-deny-$CARGO_DENY_VERSION.tmp" "$MECAPY_HOME/cargo-deny-$CARGO_DENY_VERSION"
}

check() {
  install
  "$CARGO_DENY" --manifest-path "$REPO_DIR/Cargo.toml" --offline --config "$CONFIG" check \
    --hide-inclusion-graph licenses bans sources ||
    fail "a dependency breaks infra/deny.toml (above: which, and why)"
  say "licences, bans and sources: ok"
}

audit() {
  install
  local failed=0
  "$CARGO_DENY" --manifest-path "$REPO_DIR/Cargo.toml" --config "$CONFIG" check advisories ||
    failed=1
  for dir in web infra/contract; do
    (cd "$REPO_DIR/$dir" && npm audit) || failed=1
  done
  # The pinned Python tools (SAM, LocalStack, moto, schemathesis, cargo-lambda), each venv.
  local pip_audit=$MECAPY_HOME/pip-audit-$PIP_AUDIT_VERSION venv
  if [[ ! -x $pip_audit/bin/pip-audit ]]; then
    "$UV" venv -q "$pip_audit" && "$UV" pip install -q --python "$pip_audit/bin/python" \
      "pip-audit==$PIP_AUDIT_VERSION" || failed=1
  fi
  for venv in "$MECAPY_HOME"/*/; do
    [[ -x $venv/bin/python && $venv != "$pip_audit/" ]] || continue
    say "pip-audit $(basename "$venv")"
    "$pip_audit/bin/pip-audit" --strict --path "$(compgen -G "$venv/lib/python3*/site-packages" | head -n1)" ||
      failed=1
  done
  if ((failed)); then
    fail "the audit failed or could not run: it reads the advisory databases online (cargo-deny's, npm's registry audit endpoint, PyPI's vulnerability feed), which this machine cannot reach; run \`make audit\` where the internet is"
  fi
  say "advisories: none"
}

case ${1:-} in
  check) check ;;
  audit) audit ;;
  *)
    echo "usage: $0 check|audit" >&2
    exit 2
    ;;
esac

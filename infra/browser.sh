#!/usr/bin/env bash
# The web console's browser tests: Debian's chromium driven by playwright-core (npm, pinned in
# web/package-lock.json; it downloads no browser) through the deployed stack (.run/stack.env).
#
#   infra/browser.sh install   apt-get install chromium (once), npm ci in web/ (once per lock)
#   infra/browser.sh test      install, then node --test web/tests/ (make browser-test)
#
# The browser only talks to loopback and the docker bridge: *.localstack.cloud is mapped to
# 127.0.0.1 by --host-resolver-rules (web/tests/browser.js), nothing resolves anywhere else.
# Screenshots of the result page: .run/console-result-{light,dark}.png.

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
LOG_DIR=$RUN_DIR/logs
LOG=$LOG_DIR/browser-install.log
WEB_DIR=$REPO_DIR/web
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
STEP_PREFIX=browser
export DEBIAN_FRONTEND=noninteractive
# shellcheck source=infra/lib/steps.sh
. "$REPO_DIR/infra/lib/steps.sh"

install_chromium() {
  [[ -x $CHROMIUM ]] && return 0
  [[ $(id -u) == 0 ]] || fail "chromium is missing and installing it needs root: apt-get install chromium"
  say "apt-get install chromium (log $LOG)"
  # An update only when the package is not known yet (a fresh machine's empty lists).
  apt-cache show chromium >/dev/null 2>&1 || run apt-update apt-get -o DPkg::Lock::Timeout=600 update -qq
  run apt-install apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium
  [[ -x $CHROMIUM ]] || fail "apt installed chromium but $CHROMIUM is missing"
}

# npm ci when node_modules is missing or was installed from another package-lock.json
# (infra/deploy.sh does the same before building the console; the stamp is shared).
install_web_deps() {
  command -v npm >/dev/null || fail "node and npm are missing: run \`make services\` (infra/services.sh installs them)"
  local stamp=$WEB_DIR/node_modules/.mecapy-lock-sha256 sum
  sum=$(sha256sum "$WEB_DIR/package-lock.json" | cut -d' ' -f1)
  [[ -f $stamp && $(cat "$stamp") == "$sum" ]] && return 0
  say "npm ci in web/ (log $LOG)"
  run npm-ci env -C "$WEB_DIR" npm ci --no-audit --no-fund --loglevel=error
  printf '%s' "$sum" >"$stamp"
}

install() {
  mkdir -p "$LOG_DIR"
  : >>"$LOG"
  install_chromium
  install_web_deps
}

case ${1:-} in
install) install ;;
test)
  install
  say "node --test web/tests/ ($("$CHROMIUM" --version 2>/dev/null || echo chromium), stack from $RUN_DIR/stack.env)"
  cd "$WEB_DIR"
  MECAPY_RUN_DIR=$RUN_DIR CHROMIUM=$CHROMIUM node --test --test-concurrency=1 --test-reporter=spec tests/
  ;;
*)
  echo "usage: $0 install|test" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# The API's contract (openapi.yaml, derived from the code by `make openapi`).
#
#   infra/contract/contract.sh lint   @redocly/cli lints openapi.yaml (rules: redocly.yaml)
#   infra/contract/contract.sh test   schemathesis runs every operation of openapi.yaml against
#                                     the deployed stack's API Gateway, with a real token of
#                                     the development user carol (logged in through the provider)
#
# Both tools come from the registries, pinned, installed once per version under $MECAPY_HOME;
# neither sends anything anywhere but the local stack (redocly's telemetry and update check off).

set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HERE/../.." && pwd)
MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
LOG_DIR=$RUN_DIR/logs
SCHEMATHESIS_VERSION=4.32.5
VENV=$MECAPY_HOME/schemathesis-$SCHEMATHESIS_VERSION
UV=$MECAPY_HOME/uv-0.13.9/bin/uv
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
export UV_CACHE_DIR=${UV_CACHE_DIR:-$MECAPY_HOME/cache/uv} UV_NO_PROGRESS=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never

REPORT_PREFIX=contract
REPORT_TAIL=60
# shellcheck source=infra/lib/report.sh
. "$REPO_DIR/infra/lib/report.sh"

# npm ci when node_modules is missing or was installed from another package-lock.json.
redocly_deps() {
  local stamp=$HERE/node_modules/.mecapy-lock-sha256 sum
  sum=$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)
  [[ -f $stamp && $(cat "$stamp") == "$sum" ]] && return 0
  command -v npm >/dev/null || fail "npm is missing: run \`make services\` (it installs Node.js and npm)"
  mkdir -p "$LOG_DIR"
  say "npm ci @redocly/cli (log $LOG_DIR/contract-npm.log)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$LOG_DIR/contract-npm.log" 2>&1 ||
    fail "npm ci failed in $HERE" "$LOG_DIR/contract-npm.log"
  printf '%s' "$sum" >"$stamp"
}

lint() {
  redocly_deps
  say "redocly lint openapi.yaml"
  # Node 20 draws a deprecation box on every run: keep the verdict, drop the box.
  "$HERE/node_modules/.bin/redocly" lint --config "$HERE/redocly.yaml" "$REPO_DIR/openapi.yaml" 2>&1 |
    grep -v '║\|╔\|╚' | grep -v '^$'
}

schemathesis_venv() {
  [[ -x $VENV/bin/schemathesis && -f $VENV/.mecapy-ok ]] && return 0
  [[ -x $UV ]] || fail "uv is missing at $UV: run \`make services\` first"
  mkdir -p "$LOG_DIR"
  local log=$LOG_DIR/install-schemathesis.log
  say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV (log $log)"
  rm -rf "$VENV"
  { "$UV" venv -q -p python3.11 "$VENV" &&
    VIRTUAL_ENV=$VENV "$UV" pip install --exclude-newer 2026-11-20 "schemathesis==$SCHEMATHESIS_VERSION"; } \
    >"$log" 2>&1 || fail "could not install schemathesis" "$log"
  touch "$VENV/.mecapy-ok"
}

test_contract() {
  schemathesis_venv
  local stack_env=$RUN_DIR/stack.env
  [[ -f $stack_env ]] || fail "no deployed stack ($stack_env is missing): run \`make deploy\`"
  # shellcheck disable=SC1090
  . "$stack_env"
  curl -s -o /dev/null --max-time 10 "$API_URL/openapi.json" ||
    fail "the stack's API does not answer at $API_URL: run \`make deploy\` (LocalStack: \`make services\`)"
  # One real job of carol's, so the job operations reach their logic, not only 404s.
  local token job
  token=$("$REPO_DIR/infra/dev-login.py" -t "$API_URL" carol carol-password) ||
    fail "carol could not log in through $API_URL (the OIDC provider: \`make services\`)"
  job=$(curl -sf --max-time 30 -X POST "$API_URL/compute" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"tool": "python", "code": "print(6 * 7)"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["job_id"])') ||
    fail "POST /compute of the contract's job was refused"
  local report=$RUN_DIR/contract
  rm -rf "$report"
  mkdir -p "$report"
  say "schemathesis $SCHEMATHESIS_VERSION against $API_URL (report $report)"
  local start=$SECONDS status=0
  (
    cd "$HERE"
    export PYTHONPATH=$HERE SCHEMATHESIS_HOOKS=hooks CONTRACT_API_URL=$API_URL CONTRACT_JOB_ID=$job
    export CONTRACT_LOGIN=$REPO_DIR/infra/dev-login.py CONTRACT_USER=carol CONTRACT_PASSWORD=carol-password
    "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" run "$REPO_DIR/openapi.yaml" \
      --url "$API_URL" --report junit,ndjson --report-dir "$report"
  ) 2>&1 | tee "$report/output.txt" || status=$?
  say "schemathesis finished in $((SECONDS - start)) s with exit code $status"
  return "$status"
}

case ${1:-} in
lint) lint ;;
test) test_contract ;;
*)
  echo "usage: $0 lint|test" >&2
  exit 2
  ;;
esac

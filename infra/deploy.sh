#!/usr/bin/env bash
# Builds the functions with SAM (cargo-lambda) and deploys template.yaml to LocalStack.
#
#   infra/deploy.sh tools     install the SAM CLI, samlocal, awslocal and cfn-lint (once)
#   infra/deploy.sh lint      cfn-lint template.yaml && sam validate --lint
#   infra/deploy.sh build     sam build --config-env localstack   (debug build, x86_64)
#   infra/deploy.sh deploy    samlocal deploy --config-env localstack, then write .run/stack.env
#   infra/deploy.sh outputs   (re)write .run/stack.env from the deployed stack and print it
#   infra/deploy.sh all       tools, build, deploy
#
# The same commands a user runs by hand (README), with the tools from $MECAPY_HOME on PATH.
# SAM_BUILD_MODE=release builds optimised binaries instead (slower; what AWS gets).

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
set -a
# shellcheck disable=SC1091
. "$REPO_DIR/infra/local.env"
set +a

MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
LOG_DIR=$RUN_DIR/logs
STACK_ENV=$RUN_DIR/stack.env
CONFIG_ENV=${SAM_CONFIG_ENV:-localstack}
STACK_NAME=${STACK_NAME:-mecapy-local}

# Pinned versions of the deployment tools (one venv shared by every clone).
SAM_VERSION=1.170.0
SAM_LOCAL_VERSION=1.71.0
AWSCLI_LOCAL_VERSION=0.23.0
AWSCLI_VERSION=1.46.3
CFN_LINT_VERSION=1.58.0
UV=$MECAPY_HOME/uv-0.13.9/bin/uv
TOOLS=$MECAPY_HOME/deploy-tools-sam$SAM_VERSION
TOOLS_MARKER="aws-sam-cli==$SAM_VERSION aws-sam-cli-local==$SAM_LOCAL_VERSION awscli-local==$AWSCLI_LOCAL_VERSION awscli==$AWSCLI_VERSION cfn-lint==$CFN_LINT_VERSION"

export PATH=$TOOLS/bin:$MECAPY_HOME/bin:$HOME/.cargo/bin:$PATH
export UV_CACHE_DIR=${UV_CACHE_DIR:-$MECAPY_HOME/cache/uv} UV_NO_PROGRESS=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
# Nothing leaves the machine: no SAM telemetry, no version check (its config lives here).
export SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR=$MECAPY_HOME/sam-config
export SAM_CLI_CONTACT_SUPPORT=0 AWS_PAGER=""
# The functions are built with the host's cargo and glibc (the runtime image carries the same
# glibc), in debug mode unless SAM_BUILD_MODE says otherwise: quick, and reuses the test cache.
export CARGO_LAMBDA_COMPILER=${CARGO_LAMBDA_COMPILER:-cargo}
export SAM_BUILD_MODE=${SAM_BUILD_MODE-debug}
[[ $SAM_BUILD_MODE == release ]] && unset SAM_BUILD_MODE
# samlocal and awslocal find LocalStack here.
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}

say() { printf '[deploy] %s\n' "$*"; }
fail() { # MESSAGE [LOGFILE]
  printf '[deploy] ERROR: %s\n' "$1" >&2
  if [[ -n ${2:-} && -f $2 ]]; then
    printf -- '----- last lines of %s -----\n' "$2" >&2
    tail -n 40 "$2" >&2
    printf -- '-----\n[deploy] full log: %s\n' "$2" >&2
  fi
  exit 1
}

tools() {
  mkdir -p "$LOG_DIR" "$__SAM_CLI_APP_DIR"
  # SAM CLI global config: telemetry off, the weekly version check pushed far away.
  local meta=$__SAM_CLI_APP_DIR/metadata.json
  [[ -f $meta ]] || printf '{"telemetryEnabled": false, "lastVersionCheck": 4102444800.0}\n' >"$meta"
  [[ -f $TOOLS/.mecapy-ok && $(cat "$TOOLS/.mecapy-ok") == "$TOOLS_MARKER" ]] && return 0
  [[ -x $UV ]] || fail "uv is missing at $UV: run infra/services.sh up first"
  exec 7>"$MECAPY_HOME/.deploy-tools.lock"
  flock 7
  [[ -f $TOOLS/.mecapy-ok && $(cat "$TOOLS/.mecapy-ok") == "$TOOLS_MARKER" ]] && return 0
  local log=$LOG_DIR/install-deploy-tools.log
  say "installing $TOOLS_MARKER into $TOOLS (log $log)"
  rm -rf "$TOOLS"
  # shellcheck disable=SC2086
  { "$UV" venv -q -p python3.11 "$TOOLS" && VIRTUAL_ENV=$TOOLS "$UV" pip install --exclude-newer 2026-11-20 $TOOLS_MARKER; } \
    >"$log" 2>&1 || fail "could not install the deployment tools" "$log"
  printf '%s' "$TOOLS_MARKER" >"$TOOLS/.mecapy-ok"
  exec 7>&-
}

lint() {
  tools
  cd "$REPO_DIR"
  say "cfn-lint template.yaml"
  cfn-lint template.yaml
  say "sam validate --lint"
  sam validate --lint --region us-east-1 2>&1 | grep -v '^$'
}

localstack_up() {
  curl -sf --max-time 5 "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null ||
    fail "LocalStack does not answer at $AWS_ENDPOINT_URL: start it with \`make services\`"
}

build() {
  tools
  cd "$REPO_DIR"
  local log=$LOG_DIR/sam-build.log start=$SECONDS
  say "sam build --config-env $CONFIG_ENV (${SAM_BUILD_MODE:-release} build, log $log)"
  sam build --config-env "$CONFIG_ENV" >"$log" 2>&1 || fail "sam build failed" "$log"
  say "built in $((SECONDS - start)) s: $(du -sh .aws-sam/build | cut -f1) in .aws-sam/build"
}

stack_status() {
  aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query 'Stacks[0].StackStatus' --output text 2>/dev/null || true
}

deploy() {
  tools
  localstack_up
  cd "$REPO_DIR"
  [[ -f .aws-sam/build/template.yaml ]] || fail "nothing built: run \`infra/deploy.sh build\` first"
  local log=$LOG_DIR/sam-deploy.log start=$SECONDS status
  # A stack that failed its creation cannot be updated: delete it first.
  status=$(stack_status)
  if [[ $status == ROLLBACK_COMPLETE || $status == *FAILED ]]; then
    say "stack $STACK_NAME is $status: deleting it before deploying again"
    aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation delete-stack --stack-name "$STACK_NAME"
    aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation wait stack-delete-complete --stack-name "$STACK_NAME" || true
  fi
  # On top of samconfig's list (SAM replaces the whole list when --parameter-overrides is given,
  # so samconfig's list is passed again first; a later Key=Value wins):
  # - PostgreSQL over verified TLS: sslmode=verify-full on samconfig's DatabaseUrl, and the local
  #   CA (infra/services.sh, PGSSLROOTCERT) as DatabaseCaCert, because the functions' containers
  #   cannot read the host's files: its PEM in one quoted value, line breaks written as \n;
  # - DEPLOY_PARAMETER_OVERRIDES="Key=Value ...".
  local extra=() base=() tls=() item pem
  mapfile -t base < <(python3 -c 'import sys, tomllib
print("\n".join(tomllib.load(open("samconfig.toml", "rb"))[sys.argv[1]]["deploy"]["parameters"]["parameter_overrides"]))' "$CONFIG_ENV")
  if [[ $CONFIG_ENV == localstack ]]; then
    [[ -s ${PGSSLROOTCERT:-} ]] ||
      fail "the CA of PostgreSQL's certificate (PGSSLROOTCERT=${PGSSLROOTCERT:-}) is missing: run \`make services\`"
    for item in "${base[@]}"; do
      [[ $item == DatabaseUrl=* && $item != *sslmode=* ]] || continue
      if [[ $item == *\?* ]]; then tls+=("$item&sslmode=verify-full"); else tls+=("$item?sslmode=verify-full"); fi
    done
    pem=$(<"$PGSSLROOTCERT")
    tls+=("DatabaseCaCert=\"${pem//$'\n'/\\n}\\n\"")
  fi
  if ((${#tls[@]})) || [[ -n ${DEPLOY_PARAMETER_OVERRIDES:-} ]]; then
    # shellcheck disable=SC2206
    extra=(--parameter-overrides "${base[@]}" "${tls[@]}" ${DEPLOY_PARAMETER_OVERRIDES:-})
  fi
  say "samlocal deploy --config-env $CONFIG_ENV (stack $STACK_NAME, log $log)"
  samlocal deploy --config-env "$CONFIG_ENV" --no-progressbar "${extra[@]}" >"$log" 2>&1 ||
    fail "samlocal deploy failed (stack $STACK_NAME is $(stack_status))" "$log"
  status=$(stack_status)
  [[ $status == CREATE_COMPLETE || $status == UPDATE_COMPLETE ]] ||
    fail "stack $STACK_NAME is $status after the deployment" "$log"
  outputs >/dev/null
  wait_functions_active
  say "deployed in $((SECONDS - start)) s: $status"
}

# Functions become Active once their runtime reported ready; wait for it (and say which failed).
wait_functions_active() {
  local names name state deadline=$((SECONDS + 180))
  names=$(aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stack-resources --stack-name "$STACK_NAME" \
    --query "StackResources[?ResourceType=='AWS::Lambda::Function'].PhysicalResourceId" --output text)
  for name in $names; do
    while :; do
      state=$(aws --endpoint-url "$AWS_ENDPOINT_URL" lambda get-function --function-name "$name" \
        --query 'Configuration.[State,LastUpdateStatus]' --output text 2>/dev/null || true)
      [[ $state == "Active"*"Successful" ]] && break
      [[ $state == Failed* || $state == *Failed ]] &&
        fail "function $name is $state (LocalStack log: $LOG_DIR/localstack.log)"
      ((SECONDS < deadline)) || fail "function $name is still '$state' after 180 s (LocalStack log: $LOG_DIR/localstack.log)"
      sleep 1
    done
  done
}

outputs() {
  tools >/dev/null
  local json
  json=$(aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query 'Stacks[0].Outputs' --output json) || fail "stack $STACK_NAME not found: run \`make deploy\`"
  mkdir -p "$RUN_DIR"
  STACK_OUTPUTS=$json python3 - "$AWS_ENDPOINT_URL" "$STACK_NAME" >"$STACK_ENV.tmp" <<'PY'
import json, os, sys
endpoint, stack = sys.argv[1].rstrip("/"), sys.argv[2]
out = {o["OutputKey"]: o["OutputValue"] for o in json.loads(os.environ["STACK_OUTPUTS"])}
values = {
    "STACK_NAME": stack,
    # LocalStack's path-style URL of a REST API stage: reachable without any DNS name.
    "API_URL": f"{endpoint}/restapis/{out['ApiId']}/{out['Stage']}/_user_request_",
    "API_ID": out["ApiId"],
    "STACK_BUCKET": out["UploadBucketName"],
    "COMPUTE_QUEUE_URL": out["ComputeQueueUrl"],
    "COMPUTE_DLQ_URL": out["ComputeDeadLetterQueueUrl"],
    "EVENTS_QUEUE_URL": out["EventsQueueUrl"],
    "DISPATCH_FUNCTION": out["ComputeDispatchFunctionName"],
}
for k, v in values.items():
    print(f"{k}={v}")
PY
  mv "$STACK_ENV.tmp" "$STACK_ENV"
  cat "$STACK_ENV"
}

case ${1:-} in
tools) tools ;;
lint) lint ;;
build) build ;;
deploy) deploy ;;
outputs) outputs ;;
all)
  tools
  build
  deploy
  ;;
*)
  echo "usage: $0 tools|lint|build|deploy|outputs|all" >&2
  exit 2
  ;;
esac

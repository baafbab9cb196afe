#!/usr/bin/env bash
# Builds the functions with SAM (cargo-lambda) and deploys template.yaml to LocalStack.
#
#   infra/deploy.sh tools     install the SAM CLI, samlocal, awslocal and cfn-lint (once)
#   infra/deploy.sh lint      cfn-lint template.yaml && sam validate --lint
#   infra/deploy.sh build     sam build --config-env localstack   (debug build, x86_64)
#   infra/deploy.sh deploy    samlocal deploy --config-env localstack, then write .run/stack.env
#   infra/deploy.sh outputs   (re)write .run/stack.env from the deployed stack and print it
#   infra/deploy.sh console   build the web console (web/) and upload it with its config.json
#   infra/deploy.sh all       tools, build (functions and console), deploy (stack, then console)
#
# The same commands a user runs by hand (docs/aws.md), with the tools from $MECAPY_HOME on PATH.
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

REPORT_PREFIX=deploy
# shellcheck source=infra/lib/report.sh
. "$REPO_DIR/infra/lib/report.sh"

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
  console_build
}

# ---------------------------------------------------------------- the web console (web/)
WEB_DIR=$REPO_DIR/web

# npm ci when node_modules is missing or was installed from another package-lock.json (the same
# stamp as infra/browser.sh), then vite build into web/dist.
console_build() {
  command -v npm >/dev/null || fail "node and npm are missing: run \`make services\` (infra/services.sh installs them)"
  mkdir -p "$LOG_DIR"
  local log=$LOG_DIR/console-build.log stamp=$WEB_DIR/node_modules/.mecapy-lock-sha256 sum start=$SECONDS
  : >"$log"
  sum=$(sha256sum "$WEB_DIR/package-lock.json" | cut -d' ' -f1)
  if [[ ! -f $stamp || $(cat "$stamp") != "$sum" ]]; then
    say "console: npm ci in web/ (log $log)"
    (cd "$WEB_DIR" && npm ci --no-audit --no-fund --loglevel=error) >>"$log" 2>&1 || fail "npm ci failed in web/" "$log"
    printf '%s' "$sum" >"$stamp"
  fi
  (cd "$WEB_DIR" && npm run build) >>"$log" 2>&1 || fail "the web console's build failed" "$log"
  say "console: built in $((SECONDS - start)) s: $(du -sh "$WEB_DIR/dist" | cut -f1) in web/dist"
}

# LocalStack 4.9.2 does not apply CloudFormation updates of an existing bucket (its S3 bucket
# provider has no update), so an upload bucket created before the console, or before a change of
# its CORS rules, lacks the console's origin or the headers and methods template.yaml declares:
# bring the rules to the template (AWS applies the template itself).
upload_bucket_cors() { # CONSOLE_ORIGIN
  local bucket rules
  bucket=$(sed -n 's/^STACK_BUCKET=//p' "$STACK_ENV")
  rules=$(aws --endpoint-url "$AWS_ENDPOINT_URL" s3api get-bucket-cors --bucket "$bucket" --output json 2>/dev/null) || return 0
  rules=$(RULES=$rules python3 - "$1" "$REPO_DIR/template.yaml" <<'PY'
import json, os, re, sys
origin, template, rules = sys.argv[1], open(sys.argv[2]).read(), json.loads(os.environ["RULES"])
cors = template[template.index("\n  UploadBucket:"):]
cors = cors[cors.index("CorsRules:"):]
declared = {
    key: [v.strip() for v in re.search(rf"{key}: \[([^\]]*)\]", cors).group(1).split(",")]
    for key in ("AllowedHeaders", "AllowedMethods")
}
changed = False
for rule in rules["CORSRules"]:
    if origin not in rule["AllowedOrigins"]:
        rule["AllowedOrigins"].append(origin)
        changed = True
    for key, values in declared.items():
        if rule.get(key) != values:
            rule[key] = values
            changed = True
print(json.dumps({"CORSRules": rules["CORSRules"]}) if changed else "")
PY
  )
  [[ -n $rules ]] || return 0
  say "console: bringing the CORS rules of s3://$bucket to template.yaml's (LocalStack does not update existing buckets)"
  aws --endpoint-url "$AWS_ENDPOINT_URL" s3api put-bucket-cors --bucket "$bucket" --cors-configuration "$rules" ||
    fail "could not update the CORS rules of s3://$bucket"
}

# web/dist and a config.json naming this stack's API, issuer, client and redirect URI, synced
# to the console bucket (content types from the file names; no-cache: a redeploy shows at once).
console_upload() {
  tools >/dev/null
  [[ -f $WEB_DIR/dist/index.html ]] || console_build
  local json
  json=$(aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query 'Stacks[0]' --output json) || fail "stack $STACK_NAME not found: run \`make deploy\`"
  local staging=$RUN_DIR/console-site bucket url
  rm -rf "$staging"
  cp -r "$WEB_DIR/dist" "$staging"
  { read -r bucket; read -r url; } < <(STACK=$json python3 - "$AWS_ENDPOINT_URL" "$staging/config.json" "$CONFIG_ENV" <<'PY'
import json, os, sys
endpoint, target, env = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
stack = json.loads(os.environ["STACK"])
out = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
params = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue")) for p in stack.get("Parameters", [])}
if "ConsoleBucketName" not in out:
    sys.exit("the stack has no ConsoleBucketName output (template.yaml's ConsoleBucket)")
config = {
    # LocalStack's path-style URL of the stage; on AWS the stage's execute-api URL.
    "api_url": f"{endpoint}/restapis/{out['ApiId']}/{out['Stage']}/_user_request_"
    if env == "localstack" else out["ApiUrl"],
    "issuer": params["OidcIssuer"].rstrip("/"),
    "client_id": params.get("OidcClientId") or "mecapy-api",
    "redirect_uri": out["ConsoleUrl"].rstrip("/") + "/",
}
with open(target, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
print(out["ConsoleBucketName"])
print(out["ConsoleUrl"].rstrip("/"))
PY
  ) || fail "could not write the console's config.json from stack $STACK_NAME"
  [[ -z ${CONSOLE_URL:-} || $url == "$CONSOLE_URL" ]] ||
    say "WARNING: the console is at $url but infra/local.env's CONSOLE_URL (the OIDC provider's redirect URI) is $CONSOLE_URL"
  [[ $CONFIG_ENV == localstack ]] && upload_bucket_cors "$url"
  aws --endpoint-url "$AWS_ENDPOINT_URL" s3 sync "$staging" "s3://$bucket/" --delete --cache-control no-cache \
    --only-show-errors >"$LOG_DIR/console-upload.log" 2>&1 ||
    fail "could not upload the console to s3://$bucket" "$LOG_DIR/console-upload.log"
  say "console: $url/ (bucket $bucket, $(find "$staging" -type f | wc -l) files)"
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
  # A REST API whose routes changed cannot be updated by LocalStack (see api_matches_template):
  # delete the stack first, while it is whole, and create it again.
  if [[ $CONFIG_ENV == localstack && ( $status == *COMPLETE ) && $status != DELETE_COMPLETE ]] && ! api_matches_template; then
    say "stack $STACK_NAME: its API lacks routes of template.yaml, which LocalStack cannot add to a REST API: deleting the stack to create it again (files and jobs stay)"
    aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation delete-stack --stack-name "$STACK_NAME" ||
      fail "could not delete stack $STACK_NAME: restart LocalStack (\`infra/services.sh down localstack && make deploy\`)"
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
  [[ $CONFIG_ENV != localstack ]] || api_matches_template ||
    fail "the API of stack $STACK_NAME lacks its stage or routes of template.yaml (LocalStack cannot update a REST API): restart LocalStack (\`infra/services.sh down localstack && make deploy\`; the stack is created again)" "$log"
  outputs >/dev/null
  [[ $CONFIG_ENV != localstack ]] || bucket_sends_events_to_eventbridge
  wait_functions_active
  console_upload
  say "deployed in $((SECONDS - start)) s: $status"
}

# LocalStack 4.9.2 cannot update a REST API (AWS::ApiGateway::RestApi and ::Stage updates are
# not implemented): after a route change the stack updates "successfully" with the old routes,
# and the stage, left on the replaced deployment, is deleted with it. So when the deployed API
# lacks its stage or a route of the template, the stack is deleted and created again (the
# uploads bucket is retained, PostgreSQL is outside: files and jobs stay). AWS updates in place.
api_matches_template() {
  local api stage routes path
  api=$(aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[?OutputKey=='ApiId'].OutputValue" --output text)
  stage=$(aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[?OutputKey=='Stage'].OutputValue" --output text)
  aws --endpoint-url "$AWS_ENDPOINT_URL" apigateway get-stage --rest-api-id "$api" --stage-name "$stage" \
    >/dev/null 2>&1 || return 1
  routes=$(aws --endpoint-url "$AWS_ENDPOINT_URL" apigateway get-resources --rest-api-id "$api" \
    --query 'items[].path' --output text)
  for path in $(grep -oP 'RestApiId: !Ref Api, Path: "?\K[^",]+' template.yaml); do
    [[ " ${routes//$'\t'/ } " == *" $path "* ]] || return 1
  done
}

# LocalStack 4.9.2 applies a bucket's NotificationConfiguration when it creates the bucket, not
# when a stack update changes it: a stack deployed before UploadBucket sent its events to
# EventBridge would stay without them. Add them (keeping its queue notifications) if missing.
bucket_sends_events_to_eventbridge() {
  local bucket config
  bucket=$(aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[?OutputKey=='UploadBucketName'].OutputValue" --output text)
  config=$(aws --endpoint-url "$AWS_ENDPOINT_URL" s3api get-bucket-notification-configuration --bucket "$bucket")
  [[ $config == *EventBridgeConfiguration* ]] && return 0
  say "bucket $bucket: its update did not turn on its EventBridge events (LocalStack): turning them on"
  config=$(python3 -c 'import json, sys
c = json.loads(sys.argv[1] or "{}"); c["EventBridgeConfiguration"] = {}; print(json.dumps(c))' "$config")
  aws --endpoint-url "$AWS_ENDPOINT_URL" s3api put-bucket-notification-configuration --bucket "$bucket" \
    --notification-configuration "$config" ||
    fail "could not send the events of bucket $bucket to EventBridge"
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
    "EVENT_BUS_NAME": out["EventBusName"],
    "DISPATCH_FUNCTION": out["ComputeDispatchFunctionName"],
    # The web console: its bucket's website (a browser maps *.localstack.cloud to 127.0.0.1).
    "CONSOLE_URL": out.get("ConsoleUrl", "").rstrip("/"),
    "CONSOLE_BUCKET": out.get("ConsoleBucketName", ""),
}
for k, v in values.items():
    print(f"{k}={v}")
PY
  mv "$STACK_ENV.tmp" "$STACK_ENV"
  # Each resource's logical id, type and physical id: what the least-privilege test resolves the
  # template's policies with.
  aws --endpoint-url "$AWS_ENDPOINT_URL" cloudformation list-stack-resources --stack-name "$STACK_NAME" \
    --query 'StackResourceSummaries[].[LogicalResourceId,ResourceType,PhysicalResourceId]' \
    --output text >"$RUN_DIR/stack-resources.tsv.tmp"
  mv "$RUN_DIR/stack-resources.tsv.tmp" "$RUN_DIR/stack-resources.tsv"
  cat "$STACK_ENV"
}

case ${1:-} in
tools) tools ;;
lint) lint ;;
build) build ;;
deploy) deploy ;;
outputs) outputs ;;
console)
  localstack_up
  console_build
  console_upload
  ;;
all)
  tools
  build
  deploy
  ;;
*)
  echo "usage: $0 tools|lint|build|deploy|outputs|console|all" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# Printed at the end of `make up` (and `make serve`): how to use the running API by hand.
#   infra/dev-hints.sh [API_BASE]   default: API_URL of the deployed stack (.run/stack.env)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stack_env=${MECAPY_RUN_DIR:-$repo/.run}/stack.env
api=${1:-}
if [[ -z $api && -f $stack_env ]]; then
  api=$(sed -n 's/^API_URL=//p' "$stack_env")
fi
api=${api:-http://127.0.0.1:9000/lambda-url}
console=""
[[ -f $stack_env ]] && console=$(sed -n 's/^CONSOLE_URL=//p' "$stack_env")
if [[ $api == */lambda-url ]]; then
  where="cargo lambda watch (make serve): each function under its own name"
  login=$api/login/auth/login files=$api/upload/files compute=$api/compute-submit/compute
  note="   (no dispatcher under make serve: the job stays queued; the deployed stack runs it)"
else
  where="API Gateway of the stack deployed in LocalStack (make up)"
  login=$api/auth/login files=$api/files compute=$api/compute
  note=""
fi
cat <<TXT

MecaPy API: $api
  ($where)
Development users: alice / alice-password, bob / bob-password.

# 1. Log alice in (scripted browser: login -> the provider's form -> code -> callback):
TOKEN=\$(python3 infra/dev-login.py -t $api alice alice-password)

# 2. Upload a file, list your files:
curl -s -H "Authorization: Bearer \$TOKEN" -F file=@README.md $files
curl -s -H "Authorization: Bearer \$TOKEN" $files

# 3. Submit a computation, then follow it (status, stdout/stderr links):
curl -s -X POST -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
     -d '{"tool":"python","code":"import numpy as np\\nprint(np.arange(10).sum())\\n"}' $compute
curl -s -H "Authorization: Bearer \$TOKEN" $compute/JOB_ID
$note
Redeploy after a code change: make deploy.   The demo again: make demo.   Stop everything: make down
TXT
if [[ -n $console && $api != */lambda-url ]]; then
  cat <<TXT

Web console: $console/   (log in as alice / alice-password)
  *.localstack.cloud does not resolve offline: open it in a browser that maps it to 127.0.0.1, e.g.
  chromium --host-resolver-rules="MAP *.localstack.cloud 127.0.0.1" $console/
TXT
fi

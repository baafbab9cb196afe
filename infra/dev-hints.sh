#!/usr/bin/env bash
# Printed at the end of `make up`: how to log a development user in and upload a file.
api=${1:-http://127.0.0.1:9000/lambda-url}
cat <<TXT

MecaPy is up. Functions: $api/{login,callback,upload,compute-submit}/...  (cargo lambda watch)
Development users: alice / alice-password, bob / bob-password.

# 1. Log alice in (scripted browser: login -> provider form -> code -> callback):
TOKEN=\$(python3 infra/dev-login.py -t $api alice alice-password)

#    or by hand: this prints authorization_url, code_verifier and state; open the URL, sign in,
#    copy code and state from the address bar (http://localhost:3000/auth/callback?code=...):
curl -s -X POST -H 'content-type: application/json' -d '{}' $api/login/auth/login
curl -s -X POST -H 'content-type: application/json' \\
     -d '{"code":"CODE","code_verifier":"VERIFIER","state":"STATE"}' $api/callback/auth/callback

# 2. Upload a file and list your files:
curl -s -H "Authorization: Bearer \$TOKEN" -F file=@README.md $api/upload/files
curl -s -H "Authorization: Bearer \$TOKEN" $api/upload/files

# 3. Submit a computation (validated here; no dispatcher is wired locally yet, so the job stays
#    queued: the tests, and the LocalStack deployment to come, run it):
curl -s -X POST -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
     -d '{"tool":"python","code":"import numpy as np\\nprint(np.arange(10).sum())\\n"}' $api/compute-submit/compute

Stop everything with: make down
TXT

"""schemathesis hooks of the contract tests: a real bearer token, from a real login.

The development user logs in through the API (POST /auth/login, the provider's login form,
POST /auth/callback), as infra/dev-login.py does; access tokens live 300 s, so a new login is
made every 240 s of the run.
"""
import os
import subprocess

import schemathesis


@schemathesis.auth(refresh_interval=240)
class DevelopmentLogin:
    def get(self, case, ctx):
        out = subprocess.run(
            [os.environ["CONTRACT_LOGIN"], "-t", os.environ["CONTRACT_API_URL"],
             os.environ["CONTRACT_USER"], os.environ["CONTRACT_PASSWORD"]],
            check=True, capture_output=True, text=True, timeout=60,
        )
        return out.stdout.strip()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"

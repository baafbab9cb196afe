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


def _content_type(case):
    for name, value in (case.headers or {}).items():
        if name.lower() == "content-type":
            return value
    return case.media_type or ""


@schemathesis.hook
def filter_case(context, case):
    """Drops the requests that LocalStack's own HTTP layer answers before API Gateway: a
    multipart body without any part (a bare 400 with no body, on any path) and a multipart
    content type without a boundary (API Gateway's emulation fails with a 500). On AWS both
    reach the function, which refuses them (400, 415)."""
    content_type = _content_type(case).lower()
    if not content_type.startswith("multipart/form-data"):
        return True
    if "boundary=" not in content_type:
        return False
    return not (case.operation.path == "/files" and isinstance(case.body, dict) and not case.body)

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


def _content_type_header(case):
    """The Content-Type the case sets itself (a generated multipart body gets its boundary from
    the client as it is sent; a probe of an undeclared content type sets the header)."""
    for name, value in (case.headers or {}).items():
        if name.lower() == "content-type":
            return value.lower()
    return None


@schemathesis.hook
def filter_case(context, case):
    """Drops the requests that LocalStack's own HTTP layer answers before API Gateway: a
    multipart content type without a boundary (API Gateway's emulation fails with a 500) and a
    multipart body without any part (a bare 400 with no body, on any path). On AWS both reach
    the function, which refuses them (415, 400)."""
    header = _content_type_header(case)
    if header is not None and header.startswith("multipart/form-data") and "boundary=" not in header:
        return False
    multipart = (case.media_type or "").lower().startswith("multipart/form-data")
    return not (multipart and isinstance(case.body, dict) and not case.body)

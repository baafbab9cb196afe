#!/usr/bin/env python3
"""Logs a development user in through the API and the local OIDC provider, as a browser would:
POST /auth/login, open the authorization URL, submit the provider's login form, take the code
from the redirect, POST /auth/callback. Prints the callback's JSON (or only the token with -t).

usage: infra/dev-login.py [-t] API_BASE USER PASSWORD
  API_BASE: the API Gateway URL of the deployed stack (API_URL in .run/stack.env; routes
  {API_BASE}/auth/login and /auth/callback), or http://127.0.0.1:9000/lambda-url for
  `make serve` (cargo lambda watch: {API_BASE}/login/auth/login, {API_BASE}/callback/...)
"""
import html
import http.cookiejar
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request


class StopAtRedirectUri(urllib.request.HTTPRedirectHandler):
    def __init__(self, redirect_uri):
        self.redirect_uri = redirect_uri
        self.landed = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if newurl.startswith(self.redirect_uri):
            self.landed = newurl
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"{url} answered {e.code}: {e.read().decode(errors='replace')}")


def main():
    args = sys.argv[1:]
    token_only = args[:1] == ["-t"]
    args = args[1:] if token_only else args
    if len(args) != 3:
        sys.exit(__doc__)
    api, user, password = args
    api = api.rstrip("/")
    # cargo lambda watch serves each function under its own name.
    watch = api.endswith("/lambda-url")
    login_url = f"{api}/login/auth/login" if watch else f"{api}/auth/login"
    callback_url = f"{api}/callback/auth/callback" if watch else f"{api}/auth/callback"
    login = post_json(login_url, {})
    stop = StopAtRedirectUri(login["redirect_uri"])
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), stop)
    with opener.open(login["authorization_url"], timeout=30) as page:
        form_page, page_url = page.read().decode(), page.geturl()
    action = re.search(r'<form[^>]*action="([^"]+)"', form_page)
    if not action:
        sys.exit(f"no login form at {page_url}")
    form = urllib.parse.urlencode({"username": user, "password": password, "login": "Sign In"})
    try:
        with opener.open(urllib.parse.urljoin(page_url, html.unescape(action.group(1))),
                         data=form.encode(), timeout=30):
            pass
    except urllib.error.HTTPError:
        pass
    if not stop.landed:
        sys.exit("the provider did not redirect back: wrong user name or password?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(stop.landed).query))
    session = post_json(callback_url, {
        "code": query["code"], "code_verifier": login["code_verifier"], "state": query["state"]})
    print(session["access_token"] if token_only else json.dumps(session, indent=2))


if __name__ == "__main__":
    main()

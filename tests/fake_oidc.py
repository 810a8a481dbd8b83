"""A tiny OpenID Connect provider for browser tests: discovery, an authorize page where the "user" types any
email, the code-for-token exchange with an RS256-signed ID token, and the key set. No passwords, no checks of
the client secret: it stands in for Google or Okta so that st.login runs its real code end to end."""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from joserfc import jwt
from joserfc.jwk import RSAKey


@contextmanager
def oidc_provider():
    """Serve the provider on a free port; yields its issuer URL (discovery at /.well-known/openid-configuration)."""
    key = RSAKey.generate_key(2048, parameters={"kid": "test", "use": "sig", "alg": "RS256"})
    codes: dict[str, dict] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def reply(self, status: int, body: str, kind: str = "application/json", headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body.encode())

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self.reply(200, json.dumps({
                    "issuer": issuer, "authorization_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token",
                    "jwks_uri": f"{issuer}/jwks", "response_types_supported": ["code"],
                    "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                }))
            elif url.path == "/jwks":
                self.reply(200, json.dumps({"keys": [key.as_dict(private=False)]}))
            elif url.path == "/authorize":
                hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in query.items())
                self.reply(200, f'<form action="/approve">{hidden}<label>Email <input name="email"></label>'
                                '<button>Sign in</button></form>', "text/html")
            elif url.path == "/approve":
                code = secrets.token_urlsafe(16)
                codes[code] = {"email": query["email"], "nonce": query.get("nonce"), "aud": query["client_id"]}
                target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                self.reply(302, "", "text/plain", {"Location": target})
            else:
                self.reply(404, "{}")

        def do_POST(self) -> None:
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            grant = codes.pop(form.get("code", ""), None)
            if self.path != "/token" or grant is None:
                self.reply(400, json.dumps({"error": "invalid_grant"}))
                return
            now = int(time.time())
            claims = {"iss": issuer, "sub": grant["email"], "aud": grant["aud"], "iat": now, "exp": now + 600,
                      "email": grant["email"], "email_verified": True, "name": grant["email"].split("@")[0]}
            if grant["nonce"]:
                claims["nonce"] = grant["nonce"]
            id_token = jwt.encode({"alg": "RS256", "kid": "test"}, claims, key)
            self.reply(200, json.dumps({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                        "expires_in": 600, "id_token": id_token}))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()

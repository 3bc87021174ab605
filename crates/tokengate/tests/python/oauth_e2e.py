"""The OAuth 2.0 flow against tokengate, driven by independent implementations:
authlib as the OAuth client and PyJWT as the JOSE verifier.

Reads its inputs as JSON on stdin and prints what it observed as JSON on stdout; the
Rust test that runs it makes the assertions (and this script asserts what it can).
"""

import json
import sys

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session


def main():
    cfg = json.load(sys.stdin)
    base = cfg["base_url"]
    out = {}

    # Discovery (RFC 8414).
    meta = requests.get(base + "/.well-known/oauth-authorization-server", timeout=10).json()
    out["metadata_issuer"] = meta["issuer"]

    # Token request with client_secret_basic, asking for one of the client's scopes.
    session = OAuth2Session(
        cfg["client_id"],
        cfg["client_secret"],
        scope="messages:send",
        token_endpoint_auth_method="client_secret_basic",
    )
    token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    access = token["access_token"]
    out["token_type"] = token["token_type"]
    out["scope"] = token["scope"]
    out["expires_in"] = token["expires_in"]

    # Independent verification from the published JWKS.
    header = jwt.get_unverified_header(access)
    out["header"] = header
    signing_key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(access)
    claims = jwt.decode(
        access,
        signing_key.key,
        algorithms=[header["alg"]],
        audience=cfg["audience"],
        issuer=meta["issuer"],
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    out["claims"] = claims

    # Through the gateway.
    gateway = base + cfg["gateway_path"]
    bearer = {"Authorization": "Bearer " + access}
    out["gateway_before"] = requests.post(gateway, headers=bearer, json={"phone": "5511"}, timeout=10).status_code

    # Introspection and revocation through authlib's own calls (client_secret_basic).
    out["introspect_before"] = session.introspect_token(meta["introspection_endpoint"], token=access).json()
    out["revoke_status"] = session.revoke_token(meta["revocation_endpoint"], token=access).status_code
    out["introspect_after"] = session.introspect_token(meta["introspection_endpoint"], token=access).json()
    after = requests.post(gateway, headers=bearer, json={"phone": "5511"}, timeout=10)
    out["gateway_after"] = after.status_code
    out["gateway_after_www_authenticate"] = after.headers.get("WWW-Authenticate")

    # A scope the client does not hold: RFC 6749 invalid_scope, seen by authlib as an error.
    greedy = OAuth2Session(cfg["client_id"], cfg["client_secret"], scope="groups:admin")
    try:
        greedy.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        out["greedy_error"] = None
    except Exception as e:  # authlib raises OAuthError with the server's error code
        out["greedy_error"] = getattr(e, "error", str(e))

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()

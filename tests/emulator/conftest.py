"""Helpers for the emulator's own tests: raw HTTP over real sockets (http.client)."""

import http.client
import json
from typing import Any, Dict, Optional, Tuple
from urllib.parse import urlencode, urlsplit

import pytest

from oculus_lite.jwt import b64url_strict
from oculus_lite.verify import _rsa


class Http:
    """One keep-alive connection to an emulator; every call returns (status, headers, body)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        form: Optional[Dict[str, str]] = None,
    ) -> Tuple[int, http.client.HTTPMessage, bytes]:
        hdrs = dict(headers or {})
        data: Optional[bytes] = None
        if form is not None:
            data = urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        return resp.status, resp.msg, resp.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Tuple[int, Any]:
        status, _, raw = self.request(method, path, body, **kw)
        return status, json.loads(raw) if raw else None

    def token(
        self, client_id: str, client_secret: str, scope: Optional[str] = "db:read", **extra: str
    ) -> Tuple[int, Any]:
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        if scope is not None:
            form["scope"] = scope
        form.update(extra)
        status, _, raw = self.request("POST", "/oauth/token", form=form)
        return status, json.loads(raw)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def wire(emulator: Any) -> Any:
    client = Http(emulator.url)
    yield client
    client.close()


@pytest.fixture
def connect() -> Any:
    """Factory of extra connections (closed after the test)."""
    made = []

    def make(url: str) -> Http:
        made.append(Http(url))
        return made[-1]

    yield make
    for c in made:
        c.close()


def decode_and_verify(token: str, jwks: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Header and claims of an RS256 token whose signature verifies against ``jwks`` (else AssertionError)."""
    head_b64, claims_b64, sig_b64 = token.split(".")
    header = json.loads(b64url_strict(head_b64, "header"))
    claims = json.loads(b64url_strict(claims_b64, "payload"))
    keys = {k["kid"]: k for k in jwks["keys"]}
    assert header["kid"] in keys, "kid not in JWKS"
    jwk = keys[header["kid"]]
    pub = _rsa.RSAPublicKey(
        int.from_bytes(b64url_strict(jwk["n"], "n"), "big"),
        int.from_bytes(b64url_strict(jwk["e"], "e"), "big"),
    )
    assert _rsa.verify(
        pub, "RS256", (head_b64 + "." + claims_b64).encode(), b64url_strict(sig_b64, "signature")
    )
    return header, claims


@pytest.fixture
def verify_token() -> Any:
    return decode_and_verify

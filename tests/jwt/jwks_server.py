"""Test helpers: a real JWKS server on loopback serving keys the emulator does not have
(small, RS384/RS512, kid-less, EC, broken), and a token signer built on the emulator's ``_signing``.

Used by tests/jwt, tests/interop and tests/benchmarks/bench_verify.py.
"""

import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Mapping, Optional, Tuple

from oculus_lite.emulator import _signing

_KEYS: Dict[int, List[_signing.RSAPrivateKey]] = {}
_KEYS_LOCK = threading.Lock()


def _from_primes(p: int, q: int, e: int = 65537) -> _signing.RSAPrivateKey:
    if p < q:
        p, q = q, p
    d = pow(e, -1, (p - 1) * (q - 1))
    return _signing.RSAPrivateKey(p * q, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))


def _fixed_keys() -> Dict[int, List[_signing.RSAPrivateKey]]:
    """The keys in fixed_keys.json: generating a 2048-bit key costs 0.5-2 s of CPU, in every
    process of a run (each pytest-xdist worker too)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixed_keys.json")) as f:
        data = json.load(f)
    return {
        int(bits): [_from_primes(int(k["p"], 16), int(k["q"], 16)) for k in keys]
        for bits, keys in data.items()
        if bits.isdigit()
    }


def rsa_key(bits: int = 2048, index: int = 0) -> _signing.RSAPrivateKey:
    """A process-wide test key: one from fixed_keys.json, or a new one past those."""
    with _KEYS_LOCK:
        if not _KEYS:
            _KEYS.update(_fixed_keys())
        keys = _KEYS.setdefault(bits, [])
        while len(keys) <= index:
            keys.append(_signing.generate_private_key(bits))
        return keys[index]


def b64(data: bytes) -> str:
    return _signing.b64url_encode(data)


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def claims(ttl: int = 600, **extra: Any) -> Dict[str, Any]:
    now = int(time.time())
    body: Dict[str, Any] = {
        "sub": "agent-1",
        "scope": "db:read db:write",
        "jti": "jti-{}".format(time.monotonic_ns()),
        "iat": now,
        "exp": now + ttl,
        "tenant_id": "t1",
        "agent": {"task_id": "task-9"},
    }
    body.update(extra)
    return body


def sign(
    key: _signing.RSAPrivateKey,
    payload: Mapping[str, Any],
    *,
    alg: str = "RS256",
    kid: Optional[str] = "k1",
    header: Optional[Mapping[str, Any]] = None,
) -> str:
    hdr: Dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        hdr["kid"] = kid
    hdr.update(header or {})
    signing_input = b64json(hdr) + "." + b64json(dict(payload))
    return signing_input + "." + b64(_signing.sign(key, alg, signing_input.encode("ascii")))


def sign_hs256(secret: bytes, payload: Mapping[str, Any], kid: Optional[str] = "k1") -> str:
    hdr: Dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
    if kid is not None:
        hdr["kid"] = kid
    signing_input = b64json(hdr) + "." + b64json(dict(payload))
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def unsigned(payload: Mapping[str, Any], alg: str = "none") -> str:
    return b64json({"alg": alg, "typ": "JWT"}) + "." + b64json(dict(payload)) + "."


def jwk(
    key: _signing.RSAPrivateKey, kid: Optional[str] = "k1", alg: Optional[str] = "RS256", **extra: Any
) -> Dict[str, Any]:
    out: Dict[str, Any] = dict(_signing.public_jwk(key.public_key(), kid or "", alg or "RS256"))
    if kid is None:
        del out["kid"]
    if alg is None:
        del out["alg"]
    out.update(extra)
    return out


class JwksServer:
    """``GET /jwks`` (the key set, with Cache-Control) on 127.0.0.1; counts requests,
    can fail the next N requests with 503. A real HTTP/1.1 server, one write per response."""

    def __init__(
        self, keys: Optional[List[Dict[str, Any]]] = None, cache_control: Optional[str] = "max-age=300"
    ) -> None:
        self.keys: List[Dict[str, Any]] = list(keys or [])
        self.cache_control = cache_control
        self.requests = 0
        self.fail_next = 0
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return "http://127.0.0.1:{}/jwks".format(self._server.server_address[1])

    def _answer(self) -> Tuple[int, Dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return (
                    503,
                    {"Content-Type": "application/json"},
                    b'{"error":{"code":"unavailable","message":"down"}}',
                )
            body = json.dumps({"keys": self.keys}).encode()
            headers = {"Content-Type": "application/json"}
            if self.cache_control:
                headers["Cache-Control"] = self.cache_control
            return 200, headers, body

    def start(self) -> "JwksServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                if self.path != "/jwks":
                    status, headers, body = 404, {"Content-Type": "application/json"}, b"{}"
                else:
                    status, headers, body = owner._answer()
                head = "HTTP/1.1 {} X\r\n".format(status)
                head += "".join("{}: {}\r\n".format(k, v) for k, v in headers.items())
                head += "Content-Length: {}\r\n\r\n".format(len(body))
                self.wfile.write(head.encode("latin-1") + body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-jwks-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "JwksServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class FakeClock:
    """An injectable clock that only moves when told to (for exp/nbf and cache expiry)."""

    def __init__(self, start: Optional[float] = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

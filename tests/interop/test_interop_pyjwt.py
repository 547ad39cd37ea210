"""Interop with PyJWT + cryptography: emulator tokens verify under PyJWT, tokens cryptography
signs verify under oculus_lite, and the two agree on what to reject."""

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

jwt = pytest.importorskip("jwt")
pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from oculus_lite.emulator import Emulator  # noqa: E402
from oculus_lite.exceptions import InvalidTokenError  # noqa: E402
from oculus_lite.jwt import JwksVerifier, decode  # noqa: E402

from ..jwt.jwks_server import JwksServer  # noqa: E402


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _public_jwk(key: Any, kid: str, alg: str) -> Dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": alg,
        "n": _int_b64(numbers.n),
        "e": _int_b64(numbers.e),
    }


@pytest.fixture(scope="module")
def crypto_keys() -> Dict[int, Any]:
    return {bits: rsa.generate_private_key(public_exponent=65537, key_size=bits) for bits in (2048, 4096)}


def test_emulator_tokens_verify_under_pyjwt(emulator: Emulator) -> None:
    client = jwt.PyJWKClient(emulator.url + "/.well-known/jwks.json")
    token = emulator.issue_token(scope="db:read", audience="svc")
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="svc", issuer=emulator.url)
    assert claims == decode(token).claims
    emulator.rotate_keys(grace=600)
    fresh = emulator.issue_token(scope="db:write")
    client = jwt.PyJWKClient(emulator.url + "/.well-known/jwks.json")  # PyJWT's own refetch cooldown
    assert (
        jwt.decode(fresh, client.get_signing_key_from_jwt(fresh).key, algorithms=["RS256"])["scope"]
        == "db:write"
    )
    assert jwt.decode(token, client.get_signing_key_from_jwt(token).key, algorithms=["RS256"], audience="svc")


@pytest.mark.parametrize("bits", [2048, 4096])
@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_cryptography_signed_tokens_verify_under_oculus_lite(
    crypto_keys: Dict[int, Any], bits: int, alg: str
) -> None:
    key = crypto_keys[bits]
    payload = {
        "sub": "agent-1",
        "scope": "db:read",
        "jti": "j-{}-{}".format(bits, alg),
        "iat": int(time.time()),
        "exp": int(time.time()) + 300,
        "agent": {"task_id": "t"},
    }
    token = jwt.encode(payload, key, algorithm=alg, headers={"kid": "c1"})
    with JwksServer([_public_jwk(key, "c1", alg)]) as server:
        with JwksVerifier(jwks_url=server.url, check_revocation=False) as verifier:
            assert verifier.verify(token) == payload


# --------------------------------------------------------------------------- agreement


@pytest.fixture(scope="module")
def world(crypto_keys: Dict[int, Any]) -> Iterator[Tuple[Any, Any, str]]:
    key, other = crypto_keys[2048], rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with JwksServer([_public_jwk(key, "k1", "RS256"), _public_jwk(other, "k2", "RS256")]) as server:
        yield key, other, server.url


def _variants(key: Any, other: Any) -> List[Tuple[str, str]]:
    now = int(time.time())
    base = {
        "sub": "agent-1",
        "iss": "https://issuer.test",
        "aud": "svc",
        "jti": "j1",
        "iat": now,
        "exp": now + 300,
    }

    def enc(
        changes: Dict[str, Any], k: Any = key, alg: str = "RS256", kid: str = "k1", drop: Tuple[str, ...] = ()
    ) -> str:
        body = {**base, **changes}
        for name in drop:
            body.pop(name, None)
        return str(jwt.encode(body, k, algorithm=alg, headers={"kid": kid}))

    good = enc({})
    h, p, s = good.split(".")
    tampered_payload = _b64(json.dumps({**base, "sub": "admin"}).encode())
    sig = bytearray(base64.urlsafe_b64decode(s + "=="))
    sig[0] ^= 0x80
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    hs_mac = hmac.new(pem, (hs_header + "." + p).encode(), hashlib.sha256).digest()
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return [
        ("valid", good),
        ("valid, aud list", enc({"aud": ["x", "svc"]})),
        ("valid, exp inside leeway", enc({"exp": now - 10})),
        ("valid, nbf inside leeway", enc({"nbf": now + 10})),
        ("valid, other key", enc({}, k=other, kid="k2")),
        ("expired", enc({"exp": now - 100})),
        ("nbf in the future", enc({"nbf": now + 3600})),
        ("iat in the future", enc({"iat": now + 3600})),
        ("exp not a number", enc({"exp": "soon"})),
        ("no exp", enc({}, drop=("exp",))),
        ("wrong audience", enc({"aud": "other"})),
        ("no audience", enc({}, drop=("aud",))),
        ("wrong issuer", enc({"iss": "https://evil.test"})),
        ("no issuer", enc({}, drop=("iss",))),
        ("tampered payload", h + "." + tampered_payload + "." + s),
        ("tampered signature", h + "." + p + "." + _b64(bytes(sig))),
        ("truncated signature", h + "." + p + "." + s[:-4]),
        ("signed by the other key", enc({}, k=other, kid="k1")),
        ("alg none", none_header + "." + p + "."),
        ("HS256 keyed with the public key PEM", hs_header + "." + p + "." + _b64(hs_mac)),
        ("not a JWT", "abc.def"),
    ]


def _pyjwt_accepts(token: str, key: Any, other: Any) -> bool:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        public = (other if kid == "k2" else key).public_key()
        jwt.decode(
            token,
            public,
            algorithms=["RS256", "RS384", "RS512"],
            audience="svc",
            issuer="https://issuer.test",
            leeway=30,
            options={"require": ["exp"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):  # older PyJWT leaks int() errors
        return False
    return True


def _oculus_accepts(verify: Callable[[str], Any], token: str) -> bool:
    try:
        verify(token)
    except InvalidTokenError:
        return False
    return True


def test_what_one_rejects_the_other_rejects(world: Tuple[Any, Any, str]) -> None:
    key, other, url = world
    with JwksVerifier(
        jwks_url=url,
        audience="svc",
        issuer="https://issuer.test",
        leeway=30,
        check_revocation=False,
        memo=False,
    ) as verifier:
        verdicts = [
            (name, _pyjwt_accepts(t, key, other), _oculus_accepts(verifier.verify, t))
            for name, t in _variants(key, other)
        ]
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert {name for name, ok, _ in verdicts if ok} == {
        "valid",
        "valid, aud list",
        "valid, exp inside leeway",
        "valid, nbf inside leeway",
        "valid, other key",
    }


def test_pyjwt_tokens_with_random_claims_agree(world: Tuple[Any, Any, str]) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    key, other, url = world
    verifier = JwksVerifier(
        jwks_url=url,
        audience="svc",
        issuer="https://issuer.test",
        leeway=30,
        check_revocation=False,
        memo=False,
    )
    now = int(time.time())
    # NumericDates away from the +/-leeway boundaries: PyJWT truncates them to int() and reads
    # the clock a moment apart from us, so the last second around a boundary is not comparable.
    offsets = st.integers(-1000, 1000).filter(lambda d: abs(abs(d) - 30) > 15)
    numbers = st.one_of(
        offsets.map(lambda d: now + d),
        offsets.map(lambda d: now + d + 0.25),
        st.sampled_from(["soon", "", None, [1]]),
    )

    @settings(max_examples=80, deadline=None, database=None)
    @given(
        st.fixed_dictionaries(
            {},
            optional={
                "exp": numbers,
                "nbf": numbers,
                "iat": numbers,
                "aud": st.sampled_from(["svc", "x", ["svc"], [], ["x", "svc"]]),
                "iss": st.sampled_from(["https://issuer.test", "other"]),
            },
        )
    )
    def check(payload: Dict[str, Any]) -> None:
        token = jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})
        assert _pyjwt_accepts(token, key, other) == _oculus_accepts(verifier.verify, token), payload

    try:
        check()
    finally:
        verifier.close()
    assert hypothesis


def test_known_difference_numeric_strings(world: Tuple[Any, Any, str]) -> None:
    """PyJWT int()s NumericDates, so it accepts "0" as nbf; RFC 7519 says a NumericDate is a
    JSON number, and oculus_lite refuses anything else (MalformedTokenError). Everything else
    in the agreement tests matches."""
    key, other, url = world
    now = int(time.time())
    body = {"aud": "svc", "iss": "https://issuer.test", "exp": now + 300, "nbf": "0"}
    token = jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})
    with JwksVerifier(
        jwks_url=url, audience="svc", issuer="https://issuer.test", check_revocation=False
    ) as verifier:
        assert _pyjwt_accepts(token, key, other) is True
        assert _oculus_accepts(verifier.verify, token) is False

"""Property tests: whatever arrives, decode() and verify() raise nothing outside OculusError,
and nothing but the untouched token verifies."""

import json
from typing import Any, Iterator, Tuple

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from oculus_lite.exceptions import InvalidTokenError, MalformedTokenError, OculusError  # noqa: E402
from oculus_lite.jwt import JwksVerifier, decode  # noqa: E402

from .jwks_server import JwksServer, b64, b64json, claims, jwk, rsa_key, sign  # noqa: E402

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 1e308, -1e308])
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def setup() -> Iterator[Tuple[JwksVerifier, str]]:
    key = rsa_key(2048, 0)
    with JwksServer([jwk(key, "k1")]) as server:
        verifier = JwksVerifier(jwks_url=server.url, check_revocation=False, memo=False)
        token = sign(key, claims())
        verifier.verify(token)  # keys loaded once
        yield verifier, token
        verifier.close()


def _only_oculus_errors(verifier: JwksVerifier, token: Any) -> None:
    try:
        decode(token)
    except OculusError as exc:
        assert isinstance(exc, MalformedTokenError)
    try:
        verifier.verify(token)
    except InvalidTokenError:
        pass


@SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes(setup: Tuple[JwksVerifier, str], data: bytes) -> None:
    _only_oculus_errors(setup[0], data)
    _only_oculus_errors(setup[0], data.decode("latin-1"))


@SETTINGS
@given(st.text(alphabet="ABCxyz019-_.=+/ \n", max_size=200))
def test_random_token_like_text(setup: Tuple[JwksVerifier, str], text: str) -> None:
    _only_oculus_errors(setup[0], text)


@SETTINGS
@given(st.data())
def test_truncated_and_repadded_tokens_never_verify(setup: Tuple[JwksVerifier, str], data: Any) -> None:
    verifier, token = setup
    cut = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    with pytest.raises(InvalidTokenError):
        verifier.verify(token[:cut])
    parts = token.split(".")
    which = data.draw(st.integers(min_value=0, max_value=2))
    pad = data.draw(st.sampled_from(["=", "==", "===", "%3D"]))
    parts[which] += pad
    with pytest.raises(MalformedTokenError):
        verifier.verify(".".join(parts))


@settings(SETTINGS, max_examples=60)
@given(
    st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5u", "b64", "zip"]) | st.text(max_size=6),
        json_values,
        max_size=6,
    )
)
def test_random_headers(setup: Tuple[JwksVerifier, str], header: Any) -> None:
    verifier, token = setup
    _, payload, signature = token.split(".")
    forged = b64json(header) + "." + payload + "." + signature
    with pytest.raises(InvalidTokenError):
        verifier.verify(forged)  # the header is signed too: any change must fail
    _only_oculus_errors(verifier, forged)


@settings(SETTINGS, max_examples=40)
@given(
    st.dictionaries(
        st.sampled_from(["exp", "nbf", "iat", "aud", "iss", "jti", "sub"]), json_values, max_size=7
    )
)
def test_random_signed_claims(setup: Tuple[JwksVerifier, str], payload: Any) -> None:
    verifier, _ = setup
    token = sign(rsa_key(2048, 0), payload)
    try:
        claims_ = verifier.verify(token)
    except InvalidTokenError:
        return
    assert isinstance(payload.get("exp"), (int, float)) and not isinstance(payload["exp"], bool)
    assert json.loads(json.dumps(claims_.to_dict())) == json.loads(json.dumps(payload))


@SETTINGS
@given(st.binary(min_size=1, max_size=300))
def test_random_signatures_never_verify(setup: Tuple[JwksVerifier, str], sig: bytes) -> None:
    verifier, token = setup
    h, p, _ = token.split(".")
    with pytest.raises(InvalidTokenError):
        verifier.verify(h + "." + p + "." + b64(sig))

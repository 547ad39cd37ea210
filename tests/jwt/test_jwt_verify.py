"""JwksVerifier against the emulator: every rejection with its own error class and reason."""

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any, Callable

import pytest

from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import (
    ClientClosedError,
    ConfigurationError,
    ExpiredTokenError,
    ImmatureTokenError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    KeyNotFoundError,
    MalformedTokenError,
    NetworkError,
    RevokedTokenError,
    UnsupportedAlgorithmError,
)
from oculus_lite.jwt import Claims, JwksVerifier, b64url_strict, decode

from .jwks_server import FakeClock, b64, b64json, sign_hs256, unsigned

Make = Callable[..., JwksVerifier]


def _resign_header(token: str, **changes: Any) -> str:
    """Same payload and signature under an edited header (what an attacker can do)."""
    h, p, s = token.split(".")
    header = json.loads(b64url_strict(h, "segment"))
    header.update(changes)
    return str(b64json(header)) + "." + p + "." + s


def test_valid_token_passes_with_claims(emulator: Emulator, make_verifier: Make) -> None:
    token = emulator.issue_token(scope="db:read db:write", audience="svc-a")
    verifier = make_verifier(emulator.url, audience="svc-a", issuer=emulator.url)
    claims = verifier.verify(token)
    assert isinstance(claims, Claims)
    assert claims == decode(token).claims
    assert claims.sub == emulator.demo_client_id
    assert claims.scopes == ("db:read", "db:write")
    assert claims.aud == ("svc-a",)
    assert verifier.key_ids == (decode(token).header["kid"],)


def test_token_from_the_token_endpoint_verifies(emulator: Emulator, make_verifier: Make) -> None:
    import urllib.parse
    import urllib.request

    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": emulator.demo_client_id,
            "client_secret": emulator.demo_client_secret,
            "scope": "db:read",
        }
    ).encode()
    with urllib.request.urlopen(emulator.url + "/oauth/token", data=form, timeout=10) as resp:
        token = json.loads(resp.read())["access_token"]
    assert make_verifier(emulator.url).verify(token).scope == "db:read"


def test_expired_and_leeway(emulator: Emulator, make_verifier: Make) -> None:
    with pytest.raises(ExpiredTokenError, match="expired"):
        make_verifier(emulator.url).verify(emulator.issue_token(ttl=-60))
    token = emulator.issue_token(ttl=600)
    exp = decode(token).claims["exp"]
    clock = FakeClock(exp + 29)
    verifier = make_verifier(emulator.url, clock=clock, leeway=30, memo=False)
    assert verifier.verify(token).exp == exp  # inside the leeway
    clock.now = exp + 30
    with pytest.raises(ExpiredTokenError) as info:
        verifier.verify(token)
    assert "leeway 30 s" in info.value.reason


def test_memo_hit_still_expires(emulator: Emulator, make_verifier: Make) -> None:
    token = emulator.issue_token(ttl=600)
    clock = FakeClock()
    verifier = make_verifier(emulator.url, clock=clock, leeway=0)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # served from the memo
    clock.advance(601)
    with pytest.raises(ExpiredTokenError):
        verifier.verify(token)


def test_not_yet_valid(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    now = int(time.time())
    with pytest.raises(ImmatureTokenError, match="nbf"):
        verifier.verify(emulator.issue_token(claims={"nbf": now + 3600}))
    with pytest.raises(ImmatureTokenError, match="iat"):
        verifier.verify(emulator.issue_token(claims={"iat": now + 3600, "nbf": now}))
    assert verifier.verify(emulator.issue_token(claims={"nbf": now + 10}))  # inside the leeway


def test_audience(emulator: Emulator, make_verifier: Make) -> None:
    token = emulator.issue_token(audience="svc-a")
    with pytest.raises(InvalidAudienceError, match="does not include 'svc-b'"):
        make_verifier(emulator.url, audience="svc-b").verify(token)
    with pytest.raises(InvalidAudienceError, match="expects none"):
        make_verifier(emulator.url).verify(token)
    with pytest.raises(InvalidAudienceError, match="no aud claim"):
        make_verifier(emulator.url, audience="svc-a").verify(emulator.issue_token())
    assert make_verifier(emulator.url, audience=["svc-b", "svc-a"]).verify(token)
    multi = emulator.issue_token(claims={"aud": ["svc-x", "svc-a"]})
    assert make_verifier(emulator.url, audience="svc-a").verify(multi).aud == ("svc-x", "svc-a")
    with pytest.raises(InvalidAudienceError, match="list of strings"):
        make_verifier(emulator.url, audience="svc-a").verify(emulator.issue_token(claims={"aud": [1]}))


def test_issuer(emulator: Emulator, make_verifier: Make) -> None:
    token = emulator.issue_token()
    assert make_verifier(emulator.url, issuer=emulator.url).verify(token).iss == emulator.url
    with pytest.raises(InvalidIssuerError, match="not the expected 'https://issuer.example'"):
        make_verifier(emulator.url, issuer="https://issuer.example").verify(token)
    with pytest.raises(InvalidIssuerError, match="no iss"):
        make_verifier(emulator.url, issuer=emulator.url).verify(emulator.issue_token(claims={"iss": None}))


def test_revoked_before_first_verify_and_after_memo(emulator: Emulator, make_verifier: Make) -> None:
    token, other = emulator.issue_token(), emulator.issue_token()
    emulator.revoke(decode(token).claims["jti"])
    verifier = make_verifier(emulator.url)
    with pytest.raises(RevokedTokenError) as info:
        verifier.verify(token)  # the first verify loads the list
    assert decode(token).claims["jti"] in info.value.reason
    assert verifier.verify(other)  # now memoised
    emulator.revoke(decode(other).claims["jti"])
    assert verifier.refresh_revocation() is True
    with pytest.raises(RevokedTokenError):
        verifier.verify(other)  # the memo still consults the list
    assert make_verifier(emulator.url, check_revocation=False).verify(token)


def test_tampered_payload_and_signature(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    token = emulator.issue_token(scope="db:read")
    h, p, s = token.split(".")
    payload = json.loads(b64url_strict(p, "segment"))
    payload["scope"] = "db:*"
    with pytest.raises(InvalidSignatureError, match="does not verify"):
        verifier.verify(h + "." + b64json(payload) + "." + s)
    sig = bytearray(b64url_strict(s, "segment"))
    sig[10] ^= 1
    with pytest.raises(InvalidSignatureError):
        verifier.verify(h + "." + p + "." + b64(bytes(sig)))
    with pytest.raises(InvalidSignatureError, match="256-byte"):
        verifier.verify(h + "." + p + "." + b64(bytes(sig[:-2])))
    with pytest.raises(InvalidSignatureError):
        verifier.verify(h + "." + p + ".")


def test_swapped_and_unknown_kid(emulator: Emulator, make_verifier: Make) -> None:
    old = emulator.issue_token()
    emulator.rotate_keys(grace=600)
    new = emulator.issue_token()
    verifier = make_verifier(emulator.url)
    assert verifier.verify(new) and verifier.verify(old)  # both keys published
    swapped = _resign_header(old, kid=decode(new).header["kid"])
    with pytest.raises(InvalidSignatureError):
        verifier.verify(swapped)
    with pytest.raises(KeyNotFoundError, match="no key with kid 'nobody'"):
        verifier.verify(_resign_header(old, kid="nobody"))
    with pytest.raises(KeyNotFoundError, match="no kid header"):
        verifier.verify(_resign_header(old, kid=None))


def test_alg_none_and_hmac_confusion(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    payload = decode(emulator.issue_token()).claims
    for alg in ("none", "None", "NONE"):
        with pytest.raises(UnsupportedAlgorithmError, match="never accepted"):
            verifier.verify(unsigned(payload, alg))
    # HS256 keyed with the public key's bytes, as a confused verifier would check it
    jwk = emulator.jwks()["keys"][0]
    for secret in (json.dumps(jwk).encode(), b64url_strict(jwk["n"], "segment")):
        with pytest.raises(UnsupportedAlgorithmError, match="HMAC"):
            verifier.verify(sign_hs256(secret, payload, kid=jwk["kid"]))
    h, p, _ = emulator.issue_token().split(".")
    header = b64json({"alg": "HS512", "kid": jwk["kid"]})
    mac = hmac.new(b"k", (header + "." + p).encode(), hashlib.sha512).digest()
    with pytest.raises(UnsupportedAlgorithmError):
        verifier.verify(header + "." + p + "." + b64(mac))


def test_other_header_refusals(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    token = emulator.issue_token()
    with pytest.raises(UnsupportedAlgorithmError, match="ES256"):
        verifier.verify(_resign_header(token, alg="ES256"))
    with pytest.raises(UnsupportedAlgorithmError, match="does not match key"):
        verifier.verify(_resign_header(token, alg="RS512"))  # the JWK says RS256
    with pytest.raises(MalformedTokenError, match="critical"):
        verifier.verify(emulator.issue_token(header={"crit": ["b64"], "b64": False}))
    with pytest.raises(MalformedTokenError, match="crit must be"):
        verifier.verify(_resign_header(token, crit=[]))
    with pytest.raises(MalformedTokenError, match="no alg"):
        verifier.verify(_resign_header(token, alg=None))
    with pytest.raises(MalformedTokenError, match="kid must be"):
        verifier.verify(_resign_header(token, kid=7))
    with pytest.raises(UnsupportedAlgorithmError, match="not among"):
        make_verifier(emulator.url, algorithms=["RS512"]).verify(token)


def test_claim_types(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    with pytest.raises(MalformedTokenError, match="no exp"):
        verifier.verify(
            emulator.issue_token(claims={"exp": None}).replace("", "") if False else _without_exp(emulator)
        )
    for bad in ("1999999999", True, [1]):
        with pytest.raises(MalformedTokenError, match="exp must be a number"):
            verifier.verify(emulator.issue_token(claims={"exp": bad}))
    with pytest.raises(MalformedTokenError, match="jti must be a string"):
        verifier.verify(emulator.issue_token(claims={"jti": 5}))


def _without_exp(emulator: Emulator) -> str:
    # issue_token always sets exp; sign a payload without it with the emulator's own key ring
    claims = dict(decode(emulator.issue_token()).claims)
    del claims["exp"]
    return emulator.keys.sign_jwt(claims)


def test_averify_matches_verify(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    good, expired = emulator.issue_token(), emulator.issue_token(ttl=-100)

    async def main() -> Any:
        claims = await verifier.averify(good)
        again = await verifier.averify(good)
        with pytest.raises(ExpiredTokenError):
            await verifier.averify(expired)
        return claims, again

    claims, again = asyncio.run(main())
    assert claims is again and claims.jti == decode(good).claims["jti"]


def test_async_storm_on_cold_verifier_fetches_once(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url, memo=False)
    tokens = [emulator.issue_token() for _ in range(4)]

    async def main() -> Any:
        return await asyncio.gather(*(verifier.averify(tokens[i % 4]) for i in range(64)))

    results = asyncio.run(main())
    assert len(results) == 64
    stats = emulator.stats()
    assert stats["jwks_requests"] == 1 and stats["revocation_requests"] == 1


def test_network_failure_is_not_a_verdict(emulator: Emulator, make_verifier: Make) -> None:
    token = emulator.issue_token()
    verifier = make_verifier("http://127.0.0.1:1", retries=0)
    with pytest.raises(NetworkError) as info:
        verifier.verify(token)
    assert not isinstance(info.value, InvalidTokenError)


def test_logs_and_errors_never_carry_the_token(
    emulator: Emulator, make_verifier: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = emulator.issue_token(ttl=-100)
    verifier = make_verifier(emulator.url)
    with pytest.raises(ExpiredTokenError) as info:
        verifier.verify(token)
    for part in token.split("."):
        assert part not in caplog.text
        assert part not in str(info.value) and part not in repr(info.value) and part not in repr(verifier)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        JwksVerifier()
    with pytest.raises(ConfigurationError, match="http://"):
        JwksVerifier("http://example.com")
    with pytest.raises(ConfigurationError, match="revocation_url"):
        JwksVerifier(jwks_url="https://example.com/jwks")
    with pytest.raises(ConfigurationError, match="audience"):
        JwksVerifier("https://example.com", audience=[""])
    with pytest.raises(ConfigurationError, match="leeway"):
        JwksVerifier("https://example.com", leeway=-1)
    with pytest.raises(ConfigurationError, match="algorithms"):
        JwksVerifier("https://example.com", algorithms=["HS256"])


def test_closed_verifier_refuses(emulator: Emulator) -> None:
    verifier = JwksVerifier(emulator.url)
    token = emulator.issue_token()
    assert verifier.verify(token)
    verifier.close()
    verifier.close()
    with pytest.raises(ClientClosedError):
        verifier.verify(token)


def test_extreme_numeric_dates(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url)
    huge = 10**400
    # A date no calendar reaches is a forged "never expires", not a token valid forever.
    for claims in ({"exp": huge}, {"exp": 1e308}, {"exp": -(huge)}, {"nbf": huge}, {"iat": huge}):
        with pytest.raises(MalformedTokenError, match=r"is not a date between 1970 and the end of year 9999"):
            verifier.verify(emulator.issue_token(claims=claims))
    with pytest.raises(MalformedTokenError, match=r"exp 1000000000\d*\.\.\. is not"):
        verifier.verify(emulator.issue_token(claims={"exp": huge}))
    h, p, s = emulator.issue_token().split(".")
    with pytest.raises(MalformedTokenError, match="not valid JSON"):
        verifier.verify(h + "." + b64(b'{"exp": Infinity}') + "." + s)

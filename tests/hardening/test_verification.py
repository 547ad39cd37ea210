"""Forged dates and forgotten keys (issue 16, "Verification").

Tokens are signed with the emulator's own key over a payload written byte for byte, so a
claim can be ``1e999`` (which JSON parsers read as infinity) or an integer no float holds.
"""

import asyncio
import json
from typing import Iterator

import pytest

from oculus_lite._engine import ManualClock
from oculus_lite.emulator import Emulator
from oculus_lite.emulator import _signing as _rsa
from oculus_lite.exceptions import (
    ExpiredTokenError,
    ImmatureTokenError,
    InvalidTokenError,
    KeyNotFoundError,
    MalformedTokenError,
)
from oculus_lite.jwt import JwksVerifier

#: The last second of year 9999.
LAST = 253402300799


def _sign_raw(emulator: Emulator, payload: str) -> str:
    """A token whose payload is exactly ``payload`` (JSON text), signed by the emulator's key."""
    key, kid = emulator.keys.current()
    header = json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode()
    signing_input = _rsa.b64url_encode(header) + "." + _rsa.b64url_encode(payload.encode())
    return signing_input + "." + _rsa.b64url_encode(_rsa.sign(key, "RS256", signing_input.encode("ascii")))


@pytest.fixture
def verifier(emulator: Emulator) -> Iterator[JwksVerifier]:
    with JwksVerifier(emulator.url, check_revocation=False) as v:
        yield v


def _payload(emulator: Emulator, **numbers: str) -> str:
    """Claims of a valid token, with some numeric claims replaced by raw JSON number text."""
    claims = json.loads(json.dumps(_decode_claims(emulator.issue_token())))
    text = json.dumps({k: v for k, v in claims.items() if k not in numbers})
    extra = ", ".join('"{}": {}'.format(name, raw) for name, raw in numbers.items())
    return text[:-1] + ", " + extra + "}"


def _decode_claims(token: str) -> "dict[str, object]":
    from oculus_lite.jwt import decode

    return dict(decode(token).claims)


OUT_OF_RANGE = [
    "1e999",
    "-1e999",
    "1E400",
    "1e308",
    "1.7976931348623157e308",
    "1" + "0" * 400,
    "-" + "1" + "0" * 400,
    str(LAST + 1),
    "253402300800.5",
    "1e12",
    "-1",
    "-0.5",
    "-1e-300",
    str(2**63),
    str(2**64 + 1),
]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("raw", OUT_OF_RANGE, ids=lambda r: r[:24])
def test_a_numeric_claim_that_is_not_a_real_date_is_refused(emulator, verifier, claim, raw):
    token = _sign_raw(emulator, _payload(emulator, **{claim: raw}))
    with pytest.raises(MalformedTokenError) as info:
        verifier.verify(token)
    assert claim in info.value.reason and "year 9999" in info.value.reason
    assert len(info.value.reason) < 200


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_nan_and_infinity_literals_are_refused(emulator, verifier, claim):
    for raw in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(MalformedTokenError):
            verifier.verify(_sign_raw(emulator, _payload(emulator, **{claim: raw})))


def test_the_edges_of_the_range_are_dates(emulator, verifier):
    # exp at the end of year 9999 verifies; exp 0 is a date, long past.
    assert verifier.verify(_sign_raw(emulator, _payload(emulator, exp=str(LAST)))).exp == LAST
    assert verifier.verify(_sign_raw(emulator, _payload(emulator, exp=str(LAST) + ".0"))).exp == LAST
    with pytest.raises(ExpiredTokenError):
        verifier.verify(_sign_raw(emulator, _payload(emulator, exp="0")))
    with pytest.raises(ImmatureTokenError):
        verifier.verify(_sign_raw(emulator, _payload(emulator, nbf=str(LAST))))
    assert verifier.verify(_sign_raw(emulator, _payload(emulator, nbf="0", iat="0")))


def test_the_same_holds_for_averify(emulator, verifier):
    token = _sign_raw(emulator, _payload(emulator, exp="1e999"))

    async def main() -> None:
        with pytest.raises(MalformedTokenError):
            await verifier.averify(token)

    asyncio.run(main())


# ------------------------------------------------------------------ the memo and key removal


def test_a_memoised_token_is_refused_once_a_refresh_drops_its_key():
    with Emulator(jwks_max_age=1) as emulator:
        clock = ManualClock()
        with JwksVerifier(emulator.url, check_revocation=False, clock=clock, min_cache_ttl=1) as verifier:
            token = emulator.issue_token(ttl=3600)
            assert verifier.verify(token)
            assert verifier.verify(token)  # a memo hit: no second JWKS fetch
            assert emulator.stats()["jwks_requests"] == 1

            emulator.rotate_keys()
            assert emulator.expire_retired_keys() == 1  # the token's key is gone from the JWKS
            fresh = emulator.issue_token(ttl=3600)

            clock.advance(1.0)  # the key set's max-age is over
            with pytest.raises(KeyNotFoundError):
                verifier.verify(token)
            assert emulator.stats()["jwks_requests"] == 2
            with pytest.raises(InvalidTokenError):  # and stays refused: nothing was memoised
                verifier.verify(token)
            fetched = emulator.stats()["jwks_requests"]
            assert verifier.verify(fresh)  # the new key verifies without another fetch
            assert emulator.stats()["jwks_requests"] == fetched


def test_the_async_path_forgets_the_same_way():
    with Emulator(jwks_max_age=1) as emulator:
        clock = ManualClock()
        with JwksVerifier(emulator.url, check_revocation=False, clock=clock, min_cache_ttl=1) as verifier:
            token = emulator.issue_token(ttl=3600)

            async def main() -> None:
                assert await verifier.averify(token)
                emulator.rotate_keys()
                emulator.expire_retired_keys()
                clock.advance(1.0)
                with pytest.raises(KeyNotFoundError):
                    await verifier.averify(token)

            asyncio.run(main())

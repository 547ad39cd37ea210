"""The verifier's checks that need no I/O and no state: the header (alg allow-list,
crit, kid) before any key is touched, and the registered claims (exp, nbf, iat,
aud, iss) afterwards. Reasons name the claim and what was expected.
"""

from typing import Any, Dict, Mapping, Optional, Tuple

from ..exceptions import (
    ExpiredTokenError,
    ImmatureTokenError,
    InvalidAudienceError,
    InvalidIssuerError,
    MalformedTokenError,
    UnsupportedAlgorithmError,
)
from ._keys import SUPPORTED_ALGORITHMS

__all__ = [
    "MAX_NUMERIC_DATE",
    "as_seconds",
    "check_audience",
    "check_claims",
    "check_header",
    "check_numeric_date",
    "is_number",
]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_seconds(value: Any) -> float:
    """A NumericDate as a float; integers too large for a float become +/-inf."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


#: The last second of year 9999 (RFC 7519 NumericDate, as far as any calendar API goes): a later
#: date, infinity (``1e999`` parses to it) or a negative one is a forged "never expires".
MAX_NUMERIC_DATE = 253402300799


def check_numeric_date(name: str, value: Any) -> float:
    """``value`` as seconds since the epoch when it is a real date: a finite number from 0 to the
    end of year 9999; otherwise MalformedTokenError naming the claim."""
    if not is_number(value):
        raise MalformedTokenError(
            "{} must be a number (seconds since the epoch), not {}".format(name, type(value).__name__)
        )
    seconds = as_seconds(value)
    if not 0 <= seconds <= MAX_NUMERIC_DATE:  # NaN fails this too
        raise MalformedTokenError(
            "{} {} is not a date between 1970 and the end of year 9999 (0 to {} seconds since the "
            "epoch)".format(name, _show(value), MAX_NUMERIC_DATE)
        )
    return seconds


def _show(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int beyond the interpreter's digit limit
        return "<an int of over 4300 digits>"
    return text if len(text) <= 24 else text[:20] + "..."


def _refused_alg(alg: str) -> str:
    upper = alg.upper()
    if upper == "NONE":
        return "alg 'none' (an unsigned token) is never accepted"
    if upper.startswith("HS"):
        return (
            "HMAC alg {!r} is refused: tokens must be RSA-signed (accepting HMAC would let "
            "anyone sign with the public key)".format(alg)
        )
    return "alg {!r} is not supported; accepted: {}".format(alg[:20], ", ".join(SUPPORTED_ALGORITHMS))


def check_header(header: Mapping[str, Any], algorithms: Tuple[str, ...]) -> Tuple[str, Optional[str]]:
    """(alg, kid) when the header is acceptable; never touches a key."""
    alg = header.get("alg")
    if alg is None:
        raise MalformedTokenError("header has no alg")
    if not isinstance(alg, str):
        raise MalformedTokenError("header alg must be a string, not {}".format(type(alg).__name__))
    if alg not in algorithms:
        raise UnsupportedAlgorithmError(
            _refused_alg(alg)
            if alg not in SUPPORTED_ALGORITHMS
            else "alg {!r} is not among this verifier's algorithms {}".format(alg, list(algorithms))
        )
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise MalformedTokenError("header crit must be a non-empty list of names")
        raise MalformedTokenError(
            "header marks extension(s) {} as critical and this verifier understands none "
            "(RFC 7515 section 4.1.11)".format([c[:40] for c in crit[:5]])
        )
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise MalformedTokenError("header kid must be a string of at most 256 characters")
    return alg, kid


def check_claims(
    claims: Dict[str, Any],
    now: float,
    leeway: float,
    audience: Optional[Tuple[str, ...]],
    issuer: Optional[str],
) -> Dict[str, Any]:
    """The claims when exp/nbf/iat/aud/iss pass at ``now``, else the InvalidTokenError saying why."""
    if "exp" not in claims:
        raise MalformedTokenError("token has no exp claim; tokens without an expiry are refused")
    for name in ("exp", "nbf", "iat"):
        if name in claims:
            check_numeric_date(name, claims[name])
    exp = as_seconds(claims["exp"])
    if exp <= now - leeway:
        raise ExpiredTokenError(
            "token expired {:.0f} s ago (exp {}, leeway {:g} s)".format(
                now - exp, _show(claims["exp"]), leeway
            )
        )
    if "nbf" in claims and as_seconds(claims["nbf"]) > now + leeway:
        raise ImmatureTokenError(
            "token is not valid before nbf {} ({:.0f} s from now, leeway {:g} s)".format(
                _show(claims["nbf"]), as_seconds(claims["nbf"]) - now, leeway
            )
        )
    if "iat" in claims and as_seconds(claims["iat"]) > now + leeway:
        raise ImmatureTokenError(
            "token was issued in the future (iat {}, {:.0f} s from now, leeway {:g} s)".format(
                _show(claims["iat"]), as_seconds(claims["iat"]) - now, leeway
            )
        )
    check_audience(claims.get("aud"), audience)
    if issuer is not None:
        iss = claims.get("iss")
        if iss is None:
            raise InvalidIssuerError("token has no iss claim; expected {!r}".format(issuer))
        if iss != issuer:
            raise InvalidIssuerError(
                "token issuer {!r} is not the expected {!r}".format(str(iss)[:100], issuer)
            )
    jti = claims.get("jti")
    if jti is not None and not isinstance(jti, str):
        raise MalformedTokenError("jti must be a string, not {}".format(type(jti).__name__))
    return claims


def check_audience(aud: Any, audience: Optional[Tuple[str, ...]]) -> None:
    if aud is None:
        if audience is not None:
            raise InvalidAudienceError("token has no aud claim; expected one of {}".format(list(audience)))
        return
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidAudienceError("aud must be a string or a list of strings")
    if audience is None:
        if values:
            raise InvalidAudienceError(
                "token is restricted to audience {} but this verifier expects none; pass "
                "audience= to accept it".format([v[:100] for v in values[:5]])
            )
        return
    if not any(v in audience for v in values):
        raise InvalidAudienceError(
            "token audience {} does not include {}".format(
                [v[:100] for v in values[:5]],
                repr(audience[0]) if len(audience) == 1 else list(audience),
            )
        )

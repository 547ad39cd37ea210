"""The verifier's key set: JWK parsing with the reasons a key is refused, choosing the keys
for a token, and ``Cache-Control`` parsing."""

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Type

from ..exceptions import (
    InvalidResponseError,
    InvalidTokenError,
    KeyNotFoundError,
    MalformedTokenError,
    UnsupportedAlgorithmError,
)

if TYPE_CHECKING:  # pragma: no cover
    from ._rsa import RSAPublicKey

__all__ = ["KeySet", "MIN_RSA_BITS", "SUPPORTED_ALGORITHMS", "parse_max_age"]

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512")
_RSA_ALGS = SUPPORTED_ALGORITHMS


def parse_max_age(value: Optional[str]) -> Optional[float]:
    """Seconds from ``Cache-Control`` (``max-age``; ``no-cache``/``no-store`` mean 0); None if absent."""
    if not value:
        return None
    found: Optional[float] = None
    for directive in value.lower().split(","):
        name, _, arg = directive.strip().partition("=")
        if name in ("no-cache", "no-store"):
            return 0.0
        if name == "max-age":
            arg = arg.strip().strip('"')
            if arg.isdigit():
                found = float(arg)
    return found


class _Entry(NamedTuple):
    kid: Optional[str]
    key: Optional["RSAPublicKey"]  # None when refused
    alg: Optional[str]
    problem: str
    error: Type[InvalidTokenError]


def _b64int(jwk: Mapping[str, Any], name: str) -> int:
    from ..jwt import b64url_strict

    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError("its {} is missing or not a string".format(name))
    try:
        raw = b64url_strict(value, name)
    except MalformedTokenError as exc:
        raise ValueError("its {} is not canonical unpadded base64url".format(name)) from exc
    return int.from_bytes(raw, "big")


def _parse(jwk: Mapping[str, Any]) -> _Entry:
    from ._rsa import RSAPublicKey

    kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
    alg = jwk.get("alg")
    kty = jwk.get("kty")
    if kty != "RSA":
        return _Entry(
            kid,
            None,
            None,
            "it is a {!r} key, and RS256/RS384/RS512 need an RSA key".format(str(kty)[:20]),
            UnsupportedAlgorithmError,
        )
    if alg is not None and alg not in _RSA_ALGS:
        return _Entry(kid, None, None, "it is for alg {!r}".format(str(alg)[:20]), UnsupportedAlgorithmError)
    use = jwk.get("use")
    if use is not None and use != "sig":
        return _Entry(kid, None, None, "its use is {!r}, not 'sig'".format(str(use)[:20]), KeyNotFoundError)
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return _Entry(kid, None, None, "its key_ops do not include 'verify'", KeyNotFoundError)
    try:
        n = _b64int(jwk, "n")
        e = _b64int(jwk, "e")
    except ValueError as exc:
        return _Entry(kid, None, None, str(exc), KeyNotFoundError)
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        return _Entry(
            kid,
            None,
            None,
            "its modulus is {} bits; at least {} are required".format(bits, MIN_RSA_BITS),
            KeyNotFoundError,
        )
    if bits > MAX_RSA_BITS:
        return _Entry(
            kid,
            None,
            None,
            "its modulus is {} bits; at most {} are accepted".format(bits, MAX_RSA_BITS),
            KeyNotFoundError,
        )
    if e < 3 or e % 2 == 0 or e.bit_length() > 64 or n % 2 == 0:
        return _Entry(kid, None, None, "its exponent or modulus is not a valid RSA value", KeyNotFoundError)
    return _Entry(kid, RSAPublicKey(n, e), alg, "", KeyNotFoundError)


class KeySet:
    """One fetched JWKS, immutable once built; ``generation`` changes only when its keys do."""

    def __init__(self, entries: List[_Entry], generation: int, fetched_at: Optional[float]) -> None:
        self.entries = tuple(entries)
        self.generation = generation
        self.fetched_at = fetched_at
        self._by_kid: Dict[Optional[str], List[_Entry]] = {}
        for entry in entries:
            self._by_kid.setdefault(entry.kid, []).append(entry)
        self.kids: Tuple[str, ...] = tuple(
            sorted({e.kid for e in entries if e.kid is not None and e.key is not None})
        )
        self.fingerprint = tuple(
            (e.kid, e.key.n if e.key else None, e.key.e if e.key else None, e.alg, e.problem) for e in entries
        )

    @classmethod
    def from_jwks(
        cls, data: Mapping[str, Any], previous: Optional["KeySet"], fetched_at: Optional[float] = None
    ) -> "KeySet":
        keys = data.get("keys")
        if not isinstance(keys, list):
            raise InvalidResponseError("JWKS: expected a JSON object with a 'keys' list")
        entries = [_parse(jwk) for jwk in keys if isinstance(jwk, dict)]
        candidate = cls(entries, 1, fetched_at)
        if previous is not None:
            same = previous.fingerprint == candidate.fingerprint
            candidate.generation = previous.generation if same else previous.generation + 1
        return candidate

    def has_kid(self, kid: str) -> bool:
        return kid in self._by_kid

    def candidates(self, kid: Optional[str], alg: str) -> List["RSAPublicKey"]:
        """The usable keys for this token, or the error saying why there is none."""
        if kid is None:
            usable = [e.key for e in self.entries if e.key is not None and e.alg in (None, alg)]
            if len(usable) == 1:
                return usable
            raise KeyNotFoundError(
                "token has no kid header and the key set holds {} usable {} key(s); cannot choose".format(
                    len(usable), alg
                )
            )
        entries = self._by_kid.get(kid)
        if not entries:
            raise KeyNotFoundError(
                "no key with kid {!r} in the JWKS (it has {}); the token was signed by a key this "
                "issuer does not publish".format(kid[:60], list(self.kids)[:10])
            )
        found = [e.key for e in entries if e.key is not None and e.alg in (None, alg)]
        if found:
            return found
        for entry in entries:
            if entry.key is not None:
                raise UnsupportedAlgorithmError(
                    "token alg {} does not match key {!r}, which is for {}".format(alg, kid[:60], entry.alg)
                )
        raise entries[0].error("key {!r} is refused: {}".format(kid[:60], entries[0].problem))

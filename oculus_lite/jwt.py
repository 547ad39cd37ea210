"""JWT decoding and RS256/RS384/RS512 verification against a JWKS, standard library only.

Services that receive agent tokens verify them here without PyJWT or
cryptography: signatures are checked by ``_rsa`` (PKCS#1 v1.5, ``pow``,
constant-time compare), keys come from the issuer's JWKS (cached, refetched at
most once per cooldown when an unknown ``kid`` appears, the last good set kept
when a fetch fails), and verified tokens may be memoised until they expire so a
token presented again costs a dict lookup (the revocation list is still
consulted). ``decode`` parses without verifying. Importing this module loads no
network code: transports, retries and the revocation poller load on first use.
"""

import binascii
import json
import re
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from .exceptions import MalformedTokenError
from .verify._keys import SUPPORTED_ALGORITHMS

if TYPE_CHECKING:  # pragma: no cover
    from .verify._verifier import JwksVerifier

__all__ = ["Claims", "Decoded", "JwksVerifier", "MAX_TOKEN_LENGTH", "SUPPORTED_ALGORITHMS", "decode"]

#: Tokens longer than this (characters) are refused before any parsing.
MAX_TOKEN_LENGTH = 16 * 1024

_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
_TRAILING_MASK = (0, 0, 0x0F, 0x03)  # bits that must be zero in the last char, by len % 4


# --------------------------------------------------------------------------- decoding


def b64url_strict(segment: str, what: str) -> bytes:
    """Canonical unpadded base64url (RFC 7515 section 2), else MalformedTokenError."""
    if not _SEGMENT.fullmatch(segment):
        raise MalformedTokenError(
            "{} is not base64url: it contains characters outside A-Z a-z 0-9 - _ "
            "(padding '=' and the '+' '/' alphabet are not allowed)".format(what)
        )
    return _b64_checked(segment, what)


def _b64_checked(segment: str, what: str) -> bytes:
    # the caller has matched the alphabet; length and trailing bits remain
    rem = len(segment) % 4
    if rem == 1:
        raise MalformedTokenError("{} has an impossible base64url length (truncated?)".format(what))
    if rem and _ALPHABET.index(segment[-1]) & _TRAILING_MASK[rem]:
        raise MalformedTokenError("{} is not canonical base64url (non-zero trailing bits)".format(what))
    try:
        return binascii.a2b_base64(segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[rem])
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - excluded by the checks above
        raise MalformedTokenError("{} is not base64url".format(what)) from exc


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError("duplicate member {!r}".format(key[:40]))
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError("{} is not JSON".format(name))


def _json_object(raw: bytes, what: str) -> Dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise MalformedTokenError("{} is not UTF-8".format(what)) from exc
    except RecursionError as exc:
        raise MalformedTokenError("{} is nested too deeply".format(what)) from exc
    except ValueError as exc:
        raise MalformedTokenError("{} is not valid JSON ({})".format(what, str(exc)[:80])) from exc
    if not isinstance(value, dict):
        raise MalformedTokenError("{} is a JSON {}, expected an object".format(what, type(value).__name__))
    return value


class Decoded(NamedTuple):
    """A parsed, unverified JWS. ``repr`` shows header and claims only, never the token."""

    header: Dict[str, Any]
    claims: Dict[str, Any]
    signing_input: bytes
    signature: bytes

    def __repr__(self) -> str:
        return "Decoded(header={!r}, claims={!r})".format(self.header, self.claims)


def decode(token: Union[str, bytes]) -> Decoded:
    """Split and parse a compact JWS **without verifying it**; MalformedTokenError says why not."""
    if isinstance(token, (bytes, bytearray)):
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError as exc:
            raise MalformedTokenError("token contains non-ASCII bytes") from exc
    if not isinstance(token, str):
        raise MalformedTokenError("token must be a string, not {}".format(type(token).__name__))
    if len(token) > MAX_TOKEN_LENGTH:
        raise MalformedTokenError(
            "token is {} characters long; the limit is {}".format(len(token), MAX_TOKEN_LENGTH)
        )
    if not _TOKEN_SHAPE.fullmatch(token):
        _diagnose_shape(token)
    first = token.index(".")
    second = token.index(".", first + 1)
    header = _json_object(_b64_checked(token[:first], "header segment"), "header")
    claims = _json_object(_b64_checked(token[first + 1 : second], "payload segment"), "payload")
    signature = _b64_checked(token[second + 1 :], "signature segment")
    return Decoded(header, claims, token[:second].encode("ascii"), signature)


def _diagnose_shape(token: str) -> None:
    if not token:
        raise MalformedTokenError("token is empty")
    if token != token.strip():
        raise MalformedTokenError("token has leading or trailing whitespace")
    if token[:7].lower() == "bearer ":
        raise MalformedTokenError("pass the token without its 'Bearer ' prefix")
    parts = token.split(".")
    if len(parts) == 5:
        raise MalformedTokenError("token has 5 segments: an encrypted JWE, not a signed JWS")
    if len(parts) != 3:
        raise MalformedTokenError(
            "token has {} segment(s); a JWS compact token has 3 (header.payload.signature)".format(len(parts))
        )
    for part, what in zip(parts, ("header segment", "payload segment", "signature segment")):
        if not part and what != "signature segment":
            raise MalformedTokenError("{} is empty".format(what))
        b64url_strict(part, what)
    raise MalformedTokenError("token is not a JWS compact serialisation")  # pragma: no cover


# --------------------------------------------------------------------------- claims


def _readonly(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise TypeError("token claims are read-only; use Claims.to_dict() for a mutable copy")


class _FrozenDict(Dict[str, Any]):
    """A JSON object inside Claims: a real dict (==, json.dumps work) that refuses mutation."""

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly


class _FrozenList(List[Any]):
    """A JSON array inside Claims: a real list that refuses mutation."""

    __setitem__ = __delitem__ = append = extend = insert = remove = pop = clear = _readonly
    sort = reverse = __iadd__ = __imul__ = _readonly


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        frozen = _FrozenDict()
        for key, item in value.items():
            dict.__setitem__(frozen, key, _freeze(item))
        return frozen
    if isinstance(value, list):
        return _FrozenList(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(item) for item in value]
    return value


class Claims(Mapping[str, Any]):
    """The verified payload: a read-only mapping (nested objects too) with shortcuts."""

    __slots__ = ("_data",)

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._data: Dict[str, Any] = _freeze(dict(payload))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return "Claims({!r})".format(dict(self._data))

    def to_dict(self) -> Dict[str, Any]:
        """A mutable deep copy with plain dicts and lists (e.g. for json.dumps)."""
        result: Dict[str, Any] = _thaw(self._data)
        return result

    def _str(self, name: str) -> Optional[str]:
        value = self._data.get(name)
        return value if isinstance(value, str) else None

    def _num(self, name: str) -> Optional[float]:
        value = self._data.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            from .verify._claims import as_seconds

            return as_seconds(value)
        return None

    @property
    def sub(self) -> Optional[str]:
        return self._str("sub")

    @property
    def jti(self) -> Optional[str]:
        return self._str("jti")

    @property
    def iss(self) -> Optional[str]:
        return self._str("iss")

    @property
    def tenant_id(self) -> Optional[str]:
        return self._str("tenant_id")

    @property
    def scope(self) -> str:
        """The space-separated scope string ('' when absent)."""
        return self._str("scope") or ""

    @property
    def scopes(self) -> Tuple[str, ...]:
        return tuple(self.scope.split())

    @property
    def aud(self) -> Tuple[str, ...]:
        value = self._data.get("aud")
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(v for v in value if isinstance(v, str))
        return ()

    @property
    def exp(self) -> Optional[float]:
        return self._num("exp")

    @property
    def iat(self) -> Optional[float]:
        return self._num("iat")

    @property
    def nbf(self) -> Optional[float]:
        return self._num("nbf")

    @property
    def agent(self) -> Mapping[str, Any]:
        value = self._data.get("agent")
        return value if isinstance(value, dict) else _FrozenDict()


def __getattr__(name: str) -> Any:
    # PEP 562: the verifier (threads, logging, HTTP) loads only when asked for.
    if name == "JwksVerifier":
        from .verify._verifier import JwksVerifier

        return JwksVerifier
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))

"""Configuration: arguments > AGENT_*/ANTI_AI_URL > OCULUS_* environment, and the
checks that refuse a bad value before anything is sent."""

import math
import numbers
import os
import re
import unicodedata
from typing import Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ._http._hosts import is_loopback_host
from .exceptions import ConfigurationError, ValidationError

__all__ = [
    "B64_TOKEN",
    "BASE_URL_VARS",
    "CLIENT_ID_VARS",
    "CLIENT_SECRET_VARS",
    "CONTROL_CHARACTERS",
    "DEFAULT_BASE_URL",
    "MAX_SECONDS",
    "OPAQUE_TOKEN",
    "check_count",
    "check_seconds",
    "check_text",
    "from_env",
    "validate_base_url",
]

DEFAULT_BASE_URL = "https://api.antiailabs.com"

#: Where each setting may come from, in order (PROTOCOL.md A: AGENT_* first, then OCULUS_*).
CLIENT_ID_VARS = ("AGENT_CLIENT_ID", "OCULUS_CLIENT_ID")
CLIENT_SECRET_VARS = ("AGENT_CLIENT_SECRET", "OCULUS_CLIENT_SECRET")
BASE_URL_VARS = ("ANTI_AI_URL", "OCULUS_BASE_URL")

#: Control characters, C1 controls and Unicode line separators: never valid in a header value.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

#: An opaque credential a server hands out (refresh, service, OTP tokens): printable ASCII with
#: no whitespace, so it can never split a header, a form field or a log line.
#: RFC 6750 section 2.1 ``b64token``: all that may follow "Bearer " in an Authorization header.
B64_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")

OPAQUE_TOKEN = re.compile(r"[\x21-\x7e]+\Z")

#: The longest duration any setting accepts (366 days): longer is a mistake, and far longer
#: overflows the clock arithmetic and the platform's wait primitives.
MAX_SECONDS = 366 * 86400.0

#: Unicode Default_Ignorable_Code_Point characters that are letters or marks (the rest are
#: format characters, category Cf): they render as nothing, so a URL holding one is not what it
#: looks like.
_INVISIBLE_LETTERS = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def _hidden_character(text: str) -> Optional[str]:
    """The first character of ``text`` that is not what it looks like: any space (ASCII, no-break,
    ideographic...), a control, format (zero-width, bidi), private-use, surrogate or unassigned
    code point, or an invisible filler."""
    for char in text:
        if "!" <= char <= "~":
            continue
        if unicodedata.category(char)[0] in "ZC" or _INVISIBLE_LETTERS.match(char):
            return char
    return None


def from_env(
    value: Optional[str], names: Sequence[str], environ: Optional[Mapping[str, str]] = None
) -> Tuple[Optional[str], Optional[str]]:
    """(value, where it came from): the argument when given, else the first set variable."""
    if value is not None:
        return value, "argument"
    env = os.environ if environ is None else environ
    for name in names:
        found = env.get(name)
        if found:
            return found, name
    return None, None


def validate_base_url(url: object, *, allow_insecure_http: bool = False, what: str = "base_url") -> str:
    """A normalised http(s) base URL; plain http only for loopback or with explicit opt-in."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("{} must be a non-empty string like 'https://api.example.com'".format(what))
    url = url.strip(" \t\r\n\f\v")  # a pasted newline; any other space is refused below
    hidden = _hidden_character(url)
    if hidden is not None:
        raise ConfigurationError(
            "{} contains whitespace, a control or an invisible character (U+{:04X}); type the URL "
            "again without it".format(what, ord(hidden))
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError("{} is not a valid URL ({})".format(what, exc)) from exc
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            "{} must use https:// (or http:// for a loopback emulator), not {!r}".format(
                what, parts.scheme + ":" if parts.scheme else "no scheme"
            )
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "{} must not embed credentials (user:password@); pass them as arguments".format(what)
        )
    host = parts.hostname
    if not host:
        raise ConfigurationError("{} has no host".format(what))
    if parts.query or parts.fragment:
        raise ConfigurationError("{} must not have a query string or fragment".format(what))
    if parts.scheme == "http" and not is_loopback_host(host) and not allow_insecure_http:
        raise ConfigurationError(
            "{} uses plain http:// to non-loopback host {!r}: credentials would travel "
            "unencrypted. Use https://, or pass allow_insecure_http=True if you really mean "
            "it".format(what, host)
        )
    netloc = host if ":" not in host else "[{}]".format(host)
    if port is not None:
        netloc += ":{}".format(port)
    return "{}://{}{}".format(parts.scheme, netloc, parts.path.rstrip("/"))


def check_text(
    value: object,
    name: str,
    *,
    max_len: int,
    allow_empty: bool = False,
    error: type = ValidationError,
) -> str:
    """A string without control characters (no header or form injection), within length."""
    if not isinstance(value, str):
        raise error("{} must be a string, not {}".format(name, type(value).__name__))
    if not allow_empty and not value.strip():
        raise error("{} must not be empty".format(name))
    if len(value) > max_len:
        raise error("{} is {} characters long; the limit is {}".format(name, len(value), max_len))
    if CONTROL_CHARACTERS.search(value):
        raise error("{} contains a control character (CR, LF, tab, NUL...); remove it".format(name))
    return value


def check_seconds(
    value: object,
    name: str,
    *,
    allow_zero: bool = False,
    maximum: float = MAX_SECONDS,
    error: type = ConfigurationError,
) -> float:
    """The one check for every number of seconds the package accepts: an int or float, finite,
    > 0 (>= 0 with ``allow_zero``) and at most ``maximum``; never a bool, NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's numbers are Real
        raise error(
            "{} must be a number of seconds (an int or float), not {}".format(name, type(value).__name__)
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float (either sign): out of range below
        seconds = math.inf
    if not (0 <= seconds <= maximum) or (seconds == 0 and not allow_zero):  # NaN fails too
        wanted = (
            "a finite number of seconds from 0 to {:.15g}"
            if allow_zero
            else "a positive, finite number of seconds (at most {:.15g})"
        )
        raise error("{} must be {}, not {}".format(name, wanted.format(maximum), _short(value)))
    return seconds


def check_count(
    value: object,
    name: str,
    *,
    minimum: int = 0,
    maximum: Optional[int] = None,
    error: type = ConfigurationError,
) -> int:
    """An int between ``minimum`` and ``maximum`` (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error("{} must be an int, not {}".format(name, type(value).__name__))
    if value < minimum or (maximum is not None and value > maximum):
        raise error(
            "{} must be {}, not {}".format(
                name,
                "an int >= {}".format(minimum)
                if maximum is None
                else "between {} and {}".format(minimum, maximum),
                _short(value),
            )
        )
    return value


def _short(value: object) -> str:
    """A bounded echo of a number the caller gave (a 5000-digit int has no repr on 3.11+)."""
    try:
        text = repr(value)
    except ValueError:
        return "an int of over 4300 digits"
    return text if len(text) <= 24 else text[:20] + "..."

"""Configuration: arguments > AGENT_*/ANTI_AI_URL > OCULUS_* environment, and the
checks that refuse a bad value before anything is sent."""

import math
import os
import re
from typing import Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ._http._hosts import is_loopback_host
from .exceptions import ConfigurationError, ValidationError

__all__ = [
    "BASE_URL_VARS",
    "CLIENT_ID_VARS",
    "CLIENT_SECRET_VARS",
    "CONTROL_CHARACTERS",
    "DEFAULT_BASE_URL",
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
    url = url.strip()
    if CONTROL_CHARACTERS.search(url) or " " in url:
        raise ConfigurationError("{} contains whitespace or control characters".format(what))
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
    value: object, name: str, *, allow_zero: bool = False, error: type = ConfigurationError
) -> float:
    """A finite number of seconds, > 0 (or >= 0 with ``allow_zero``); never a bool, NaN or inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error("{} must be a number of seconds, not {}".format(name, type(value).__name__))
    seconds = float(value)
    if not math.isfinite(seconds):
        raise error("{} must be a finite number of seconds, not {!r}".format(name, value))
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise error("{} must be {} 0 seconds, not {!r}".format(name, ">=" if allow_zero else ">", value))
    return seconds


def check_count(value: object, name: str, *, minimum: int = 0, error: type = ConfigurationError) -> int:
    """An int >= ``minimum`` (never a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error("{} must be an int >= {}, not {!r}".format(name, minimum, value))
    return value

"""Redaction for audit events: secret-bearing keys at any depth, secret-looking values, and
every secret the client itself knows.

Keys are matched on their word parts (``api_key``, ``apiKey``, ``X-Api-Key``,
``db_password`` are secret; ``max_tokens``, ``keyword``, ``monkey``, ``tokenizer`` are not).
Values are searched for bearer/basic credentials, JWTs, provider key formats
(``sk_live_...``, ``ghp_...``, ``AKIA...``), passwords in URLs, PEM blocks and
``password=...`` style assignments.

Two steps: ``freeze`` copies a value into plain JSON types when an event is emitted
(cheap, on the caller's thread: what is queued can no longer change and always encodes), and
``Redactor.redact`` redacts that copy when the batch is encoded (on the audit thread).
"""

import math
import re
import threading
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = ["REDACTED", "Redactor", "freeze", "freeze_arguments", "is_secret_key"]

REDACTED = "[REDACTED]"

_MAX_DEPTH = 12
_MAX_ITEMS = 200
_MAX_STRING = 4096
_MAX_FROZEN_STRING = 4 * _MAX_STRING
_MAX_REPR = 200
_KEEP_SECRETS = 256

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SECRET_WORDS = frozenset(
    {
        "authorization",
        "auth",
        "bearer",
        "cookie",
        "cookies",
        "credential",
        "credentials",
        "dsn",
        "jwt",
        "otp",
        "passphrase",
        "passwd",
        "password",
        "passwords",
        "pwd",
        "secret",
        "secrets",
        "token",
        "apikey",
        "apikeys",
        "privatekey",
        "secretkey",
        "accesskey",
        "signingkey",
    }
)
_SECRET_INSIDE = ("password", "passwd", "secret", "credential", "cookie", "authorization")
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "secret", "access", "signing", "encryption", "master", "client"}
)

# One pass: credential-shaped values, passwords in URLs, and ``name=value`` assignments.
_SECRET_TEXT = re.compile(
    r"(?P<url>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"  # the password of a URL
    r"|(?P<name>\b(?i:password|passwd|pwd|secret|client[_-]?secret|token|access[_-]?token|api[_-]?key"
    r"|access[_-]?key|authorization|cookie))(?P<sep>\s*[=:]\s*)"
    r"(?:(?i:bearer|basic)\s+\S+|\"[^\"]*\"|'[^']*'|[^\s,;&]+)"  # password=..., token: "..."
    r"|-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|\Z)"  # PEM blocks, even cut short
    r"|\b(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # JWT / JWS
    r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{6,}"  # Stripe-style
    r"|\bsk-[A-Za-z0-9_-]{16,}"  # OpenAI-style
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_-]{35}"  # AWS, Google
    r"|\b(?:ak|otp|oct)_[A-Za-z0-9_]{8,}"  # Agent OTP keys and tokens, SDK service tokens
)
# Cheap pre-check: text matching none of these cannot match the pattern above. Python's re skips
# positions whose character cannot start any alternative, so this is fast on ordinary text.
_MAYBE = re.compile(
    r"://|BEGIN|(?i:bearer|basic|pass|pwd|secret|token|key|auth|cookie)|eyJ|_live_|_test_|sk-|gh[pousr]_"
    r"|github_pat_|glpat-|xox|AKIA|AIza|ak_|otp_|oct_"
)
_SHORT = 96  # results for strings up to this long are cached (names, reasons, ids repeat)


def _replace(match: "re.Match[str]") -> str:
    if match.group("url") is not None:
        return match.group("url") + REDACTED + "@"
    if match.group("name") is not None:
        return match.group("name") + match.group("sep") + REDACTED
    return REDACTED


def _secret_words(words: List[str]) -> bool:
    previous = ""
    for word in words:
        if word in _SECRET_WORDS:
            return True
        if word in ("key", "keys") and previous in _KEY_QUALIFIERS:
            return True
        if word.endswith("token") and word != "token" and len(word) > 5:
            return True  # accesstoken, authtoken; "tokens" (a count) and "tokenizer" are not secrets
        for inside in _SECRET_INSIDE:
            if inside in word:
                return True
        previous = word
    return False


_key_cache: Dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret (cached: key names repeat)."""
    cached = _key_cache.get(key)
    if cached is None:
        cached = _secret_words([word.lower() for word in _WORD.findall(key)])
        if len(_key_cache) > 4096:
            _key_cache.clear()
        _key_cache[key] = cached
    return cached


class Redactor:
    """Redacts text and copies values for audit; knows the client's own secrets.

    Thread-safe: secrets are replaced as a whole tuple, read without a lock.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: Tuple[str, ...] = ()
        self._keys: Dict[str, Tuple[str, bool]] = {}  # key -> (redacted name, names a secret)
        self._texts: Dict[str, str] = {}
        self._lock = threading.Lock()
        self.add_secrets(*secrets)

    def add_secrets(self, *values: Optional[str]) -> None:
        """Remember more secrets (tokens after a renewal...); the most recent few hundred are kept."""
        fresh = [v for v in values if isinstance(v, str) and len(v) >= 4]
        if not fresh:
            return
        with self._lock:
            kept = [s for s in self._secrets if s not in fresh] + fresh
            # Longest first, so a secret that contains another is replaced whole.
            self._secrets = tuple(sorted(kept[-_KEEP_SECRETS:], key=len, reverse=True))
            self._keys = {}
            self._texts = {}

    @property
    def secret_count(self) -> int:
        return len(self._secrets)

    def text(self, text: str) -> str:
        """``text`` with every credential-looking part and every known secret replaced."""
        short = len(text) <= _SHORT
        if short:
            cached = self._texts.get(text)
            if cached is not None:
                return cached
        result = text
        for secret in self._secrets:
            if secret in result:
                result = result.replace(secret, REDACTED)
        if _MAYBE.search(result) is not None:
            result = _SECRET_TEXT.sub(_replace, result)
        if len(result) > _MAX_STRING:
            result = result[:_MAX_STRING] + "...[{} more characters]".format(len(result) - _MAX_STRING)
        if short:
            if len(self._texts) > 8192:
                self._texts = {}
            self._texts[text] = result
        return result

    def bytes_scrub(self, data: bytes) -> bytes:
        """Last pass over an encoded batch: replace any known secret that slipped through."""
        for secret in self._secrets:
            raw = secret.encode("utf-8")
            if raw in data:
                data = data.replace(raw, REDACTED.encode("ascii"))
        return data

    def redact(self, value: object) -> object:
        """A redacted copy of a ``freeze``d value: secret keys at any depth, secret-looking text,
        known secrets."""
        kind = type(value)
        if kind is str:
            return self.text(value)  # type: ignore[arg-type]
        if kind is dict:
            keys, texts = self._keys, self._texts
            copied: Dict[str, object] = {}
            for key, item in value.items():  # type: ignore[attr-defined]
                known = keys.get(key)
                if known is None:
                    name = self.text(key)
                    known = (name, is_secret_key(key) or is_secret_key(name))
                    if len(keys) > 4096:
                        keys.clear()
                    keys[key] = known
                name, secret = known
                if secret:
                    copied[name] = REDACTED
                    continue
                item_kind = type(item)
                if item_kind is str:
                    cached = texts.get(item)
                    copied[name] = cached if cached is not None else self.text(item)
                elif item_kind is int or item_kind is bool or item is None or item_kind is float:
                    copied[name] = item
                else:
                    copied[name] = self.redact(item)
            return copied
        if kind is list:
            return [self.redact(item) for item in value]  # type: ignore[attr-defined]
        return value


def _safe_repr(value: object) -> str:
    """``repr`` for an object JSON cannot encode: never raises, bounded (redacted later)."""
    try:
        text = repr(value)
        if not isinstance(text, str):
            raise TypeError("__repr__ returned a non-string")
    except Exception:
        return "<unrepresentable {}>".format(type(value).__name__)
    if len(text) > _MAX_REPR:
        text = text[:_MAX_REPR] + "..."
    return text


_IMMUTABLE = (str, int, bool, type(None))


def freeze(value: object) -> Tuple[object, int]:
    """A private copy of ``value`` in JSON types (dict with str keys, list, str, int, finite
    float, bool, None) and its approximate encoded size. Later changes to ``value`` do not reach
    the copy, and the copy always encodes; an object JSON cannot encode becomes its ``repr``
    (taken now). Cheap: strings and numbers are shared, not copied; redaction happens later,
    off the caller's thread. Never raises."""
    size = [0]
    try:
        return _freeze(value, 0, size), size[0]
    except Exception:  # a hostile __iter__/__len__/items(): keep the event, lose this value
        return "<unreadable {}>".format(type(value).__name__), 32


def _freeze(value: object, depth: int, size: List[int]) -> object:
    kind = type(value)
    if kind is str:
        text: str = value  # type: ignore[assignment]
        if len(text) > _MAX_FROZEN_STRING:
            # Safe to cut: redaction runs on this prefix, and only its first _MAX_STRING
            # characters are ever sent, so a secret split here is never sent in part.
            text = text[:_MAX_FROZEN_STRING]
        size[0] += len(text) + 3
        return text
    if kind is int or kind is bool or value is None:
        size[0] += 6
        return value
    if kind is dict or (kind is not list and isinstance(value, Mapping)):
        if depth >= _MAX_DEPTH:
            return "[nested too deep]"
        copied: Dict[str, object] = {}
        count = 0
        for key, item in value.items():  # type: ignore[attr-defined]
            if count == _MAX_ITEMS:
                copied["[truncated]"] = "{} more items".format(len(value) - _MAX_ITEMS)  # type: ignore[arg-type]
                break
            count += 1
            name = key if type(key) is str else _key_name(key)
            size[0] += len(name) + 4
            item_kind = type(item)
            if item_kind is int or item_kind is bool or item is None:
                size[0] += 6
                copied[name] = item
            elif item_kind is str and len(item) <= _MAX_FROZEN_STRING:
                size[0] += len(item) + 3
                copied[name] = item
            else:
                copied[name] = _freeze(item, depth + 1, size)
        return copied
    if kind is float:
        size[0] += 12
        return value if math.isfinite(value) else repr(value)  # type: ignore[arg-type]
    if kind is list or isinstance(value, (tuple, set, frozenset)):
        if depth >= _MAX_DEPTH:
            return "[nested too deep]"
        items: List[object] = []
        for item in value:  # type: ignore[attr-defined]
            if len(items) == _MAX_ITEMS:
                items.append("[{} more items]".format(len(value) - _MAX_ITEMS))  # type: ignore[arg-type]
                break
            items.append(_freeze(item, depth + 1, size))
        return items
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # IntEnum and friends
        size[0] += 6
        return int(value)
    if isinstance(value, float):
        return _freeze(float(value), depth, size)
    if isinstance(value, str):
        return _freeze(str(value), depth, size)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "<{} bytes>".format(len(value))
    return _freeze(_safe_repr(value), depth, size)


def _key_name(key: object) -> str:
    if key is None or isinstance(key, (bool, int, float, str)):
        return str(key)
    return _safe_repr(key)


def freeze_arguments(arguments: Dict[str, object]) -> Tuple[Dict[str, object], int]:
    """``freeze`` for a dict the caller just built (a tool's arguments): the dict itself is kept,
    only values that could change later are copied. Returns it and its approximate size."""
    size = 2
    for name, value in arguments.items():
        kind = type(value)
        if kind is str:
            if len(value) > _MAX_FROZEN_STRING:  # type: ignore[arg-type]
                arguments[name] = value[:_MAX_FROZEN_STRING]  # type: ignore[index]
            size += len(name) + len(value) + 7  # type: ignore[arg-type]
        elif kind is int or kind is bool or value is None:
            size += len(name) + 10
        else:
            frozen, item_size = freeze(value)
            arguments[name] = frozen
            size += len(name) + 4 + item_size
    return arguments, size

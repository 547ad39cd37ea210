"""``Secret``: a credential held so that no ``repr``, ``str``, log line or crash reporter's
capture of frame locals shows it. It is unwrapped (``reveal()``) only where a request
body or header is encoded.

Scrubbing: a server may echo what it received in its error text, in whatever encoding the
client used. ``Secret.forms`` lists every encoding this client produces of the value (raw,
form-encoded both ways, JSON-escaped, base64 as in HTTP Basic), so ``scrub`` removes each.
"""

import base64
import json
from typing import Iterable, Tuple, Union
from urllib.parse import quote, quote_plus

__all__ = ["Private", "Secret", "reveal", "scrub_text"]

_MIN_SCRUB = 4  # shorter values would redact innocent text


class Secret:
    """A secret string that never shows itself."""

    __slots__ = ("_value", "_forms")

    def __init__(self, value: str) -> None:
        self._value = value
        self._forms: Tuple[str, ...] = ()

    def reveal(self) -> str:
        return self._value

    @property
    def forms(self) -> Tuple[str, ...]:
        """The value in every encoding the client may have sent it in, longest first."""
        if not self._forms and len(self._value) >= _MIN_SCRUB:
            value = self._value
            raw = value.encode("utf-8")
            forms = {
                value,
                quote_plus(value),
                quote(value, safe=""),
                json.dumps(value)[1:-1],
                json.dumps(value, ensure_ascii=False)[1:-1],
                base64.b64encode(raw).decode("ascii").rstrip("="),
                base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
            }
            self._forms = tuple(sorted((f for f in forms if len(f) >= _MIN_SCRUB), key=len, reverse=True))
        return self._forms

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Tuple[object, ...]:  # never pickled into a crash dump in clear
        raise TypeError("a Secret cannot be pickled")


SecretLike = Union[Secret, str]


def reveal(value: SecretLike) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def scrub_text(text: str, secrets: Iterable[SecretLike]) -> str:
    """``text`` with every form of every secret replaced by ``[redacted]``."""
    for secret in secrets:
        wrapped = secret if isinstance(secret, Secret) else Secret(secret)
        for form in wrapped.forms:
            if form in text:
                text = text.replace(form, "[redacted]")
    return text


class Private(dict):  # type: ignore[type-arg]
    """A JSON body that carries a secret: a dict whose ``repr`` shows only its keys."""

    def __repr__(self) -> str:
        return "Private(keys={})".format(sorted(map(str, self)))

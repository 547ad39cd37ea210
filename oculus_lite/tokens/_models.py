"""Public value types of the token client."""

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple

__all__ = ["Token"]


@dataclass(frozen=True)
class Token:
    """An access token and what the client knows about it. ``repr`` never shows a token."""

    access_token: str = field(repr=False)
    scopes: Tuple[str, ...]
    audience: Optional[str]
    expires_at: datetime
    token_type: str = "Bearer"
    refresh_token: Optional[str] = field(default=None, repr=False)
    sdk_service_token: Optional[str] = field(default=None, repr=False)
    granted_scope: Optional[str] = None

    @property
    def scope(self) -> str:
        """The scopes as the space-separated string OAuth uses."""
        return " ".join(self.scopes)

    @property
    def claims(self) -> Dict[str, Any]:
        """The access token's JWT payload, decoded on demand and NOT verified."""
        cached: Optional[Dict[str, Any]] = self.__dict__.get("_claims")
        if cached is None:
            from ..jwt import decode

            cached = dict(decode(self.access_token).claims)
            object.__setattr__(self, "_claims", cached)
        return cached

    @property
    def jti(self) -> Optional[str]:
        value = self.claims.get("jti")
        return value if isinstance(value, str) else None

    def seconds_left(self) -> float:
        return (self.expires_at - datetime.now(timezone.utc)).total_seconds()

    def __str__(self) -> str:
        return repr(self)

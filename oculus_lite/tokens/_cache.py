"""The token cache: a bounded LRU of expiry-aware entries, with no locks and no I/O.

How it works
------------
Entries are immutable; a refresh replaces the entry object. Two dicts point at
them: ``entries`` (canonical key -> entry, in LRU order) and ``fast`` (every raw
form a caller has used -> entry). ``Client.get_token`` reads ``fast`` without a
lock; every write happens in the client under its lock.

Timing, all on ``time.monotonic()`` from the moment the request was sent:

    sent ............ refresh_at ........ block_at ...... expires
          FRESH           STALE             MARGIN          EXPIRED
    FRESH   hand out, nothing else.
    STALE   hand out, and refresh in the background (refresh ahead).
    MARGIN  callers wait for the refresh; if it fails they still get this token.
    EXPIRED callers wait for the refresh; if it fails they get the error.

The margin is ``refresh_margin`` (10 s), shrunk to a quarter of the lifetime for
short-lived tokens so an 8 s token is still reused for 6 s; the refresh-ahead
window before it is a quarter of the lifetime, at most 60 s.
"""

from collections import OrderedDict
from typing import Any, Dict, Hashable, List, Optional, Tuple, Union

__all__ = ["CacheKey", "Entry", "TokenCache", "timing"]

#: The normalised scope string, or (normalised scope, audience) when an audience is set.
CacheKey = Union[str, Tuple[str, str]]

_MAX_ALIASES = 8
_NEVER = float("-inf")


def timing(sent_at: float, lifetime: float, margin: float) -> Tuple[float, float, float]:
    """(refresh_at, block_at, expires) for a token granted ``lifetime`` seconds at ``sent_at``."""
    lifetime = max(0.0, lifetime)
    margin = min(margin, lifetime / 4.0)
    ahead = min(60.0, lifetime / 4.0)
    expires = sent_at + lifetime
    block_at = expires - margin
    return block_at - ahead, block_at, expires


class Entry:
    """One cached token. Immutable by convention; small on purpose (one per cached key)."""

    __slots__ = (
        "token",
        "key",
        "refresh_at",
        "block_at",
        "expires",
        "wall_expires",
        "refresh_token",
        "extra",
    )

    def __init__(
        self,
        token: str,
        key: CacheKey,
        refresh_at: float,
        block_at: float,
        expires: float,
        wall_expires: float,
        refresh_token: Optional[str] = None,
        extra: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.token = token
        self.key = key
        self.refresh_at = refresh_at
        self.block_at = block_at
        self.expires = expires
        self.wall_expires = wall_expires
        self.refresh_token = refresh_token
        self.extra = extra

    def revoked_copy(self, jti: str) -> "Entry":
        """A tombstone: never fresh, so the next lookup takes the slow path and raises."""
        extra = dict(self.extra or {})
        extra["revoked_jti"] = jti
        return Entry(self.token, self.key, _NEVER, _NEVER, self.expires, self.wall_expires, None, extra)

    @property
    def revoked_jti(self) -> Optional[str]:
        return None if self.extra is None else self.extra.get("revoked_jti")

    def __repr__(self) -> str:
        return "Entry(key={!r}, expires={:.1f})".format(self.key, self.expires)


class TokenCache:
    """Bounded LRU of entries. Not thread-safe for writes: the owner holds a lock."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.entries: "OrderedDict[CacheKey, Entry]" = OrderedDict()
        self.fast: Dict[Hashable, Entry] = {}
        self._aliases: Dict[CacheKey, Tuple[Hashable, ...]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: CacheKey) -> Optional[Entry]:
        return self.entries.get(key)

    def put(self, entry: Entry, now: float) -> List[Entry]:
        """Insert or replace; returns what was evicted to stay within maxsize."""
        key = entry.key
        self.entries[key] = entry
        self.entries.move_to_end(key)
        self.fast[key] = entry
        for alias in self._aliases.get(key, ()):
            self.fast[alias] = entry
        evicted: List[Entry] = []
        if len(self.entries) > self.maxsize:
            for old in [e for e in self.entries.values() if e.expires <= now]:
                self.remove(old.key)
                evicted.append(old)
            while len(self.entries) > self.maxsize:
                oldest = next(iter(self.entries.values()))
                self.remove(oldest.key)
                evicted.append(oldest)
        return evicted

    def alias(self, raw: Hashable, entry: Entry) -> None:
        """Let the lock-free path find ``entry`` under another spelling of its key."""
        if raw == entry.key:
            return
        known = self._aliases.get(entry.key, ())
        if raw in known:
            self.fast[raw] = entry
        elif len(known) < _MAX_ALIASES:
            self._aliases[entry.key] = known + (raw,)
            self.fast[raw] = entry

    def remove(self, key: CacheKey) -> Optional[Entry]:
        entry = self.entries.pop(key, None)
        self.fast.pop(key, None)
        for alias in self._aliases.pop(key, ()):
            self.fast.pop(alias, None)
        return entry

    def clear(self) -> None:
        self.fast.clear()
        self.entries.clear()
        self._aliases.clear()

"""The token cache: a bounded LRU of expiry-aware entries, with no locks and no I/O.

How it works
------------
Entries are immutable; a refresh replaces the entry object. Two dicts point at
them: ``lru`` (canonical key -> entry, in LRU order) and ``by_spelling`` (every
spelling of a key a caller has used -> entry). ``Client.get_token`` reads
``by_spelling`` without a lock (the hit path); every write happens in the client
under its lock.

Timing, on the client's monotonic clock from the moment the request was sent:

    sent ............ refresh_at ........ margin_at ..... expires
          FRESH           STALE             MARGIN          EXPIRED
    FRESH   hand out, nothing else.
    STALE   hand out, and refresh in the background (refresh ahead).
    MARGIN  callers wait for the refresh; if it fails they still get this token.
    EXPIRED callers wait for the refresh; if it fails they get the error.

The margin is ``refresh_margin`` (10 s), shrunk to a quarter of the lifetime for
short-lived tokens so an 8 s token is still reused for 6 s; the refresh-ahead
window before it is a quarter of the lifetime, at most 60 s.
"""

import enum
from collections import OrderedDict
from typing import Any, Dict, Hashable, List, Optional, Tuple, Union

__all__ = ["CacheKey", "Entry", "EntryState", "TokenCache", "timing"]

#: The normalised scope string, or (normalised scope, audience) when an audience is set.
CacheKey = Union[str, Tuple[str, str]]

_MAX_ALIASES = 8
_NEVER = float("-inf")


class EntryState(enum.Enum):
    """Where an entry is in its life (see the module docstring)."""

    FRESH = "fresh"
    STALE = "stale"
    MARGIN = "margin"
    EXPIRED = "expired"


def timing(sent_at: float, lifetime: float, margin: float) -> Tuple[float, float, float]:
    """(refresh_at, margin_at, expires) for a token granted ``lifetime`` seconds at ``sent_at``."""
    lifetime = max(0.0, lifetime)
    margin = min(margin, lifetime / 4.0)
    ahead = min(60.0, lifetime / 4.0)
    expires = sent_at + lifetime
    margin_at = expires - margin
    return margin_at - ahead, margin_at, expires


class Entry:
    """One cached token. Immutable by convention; small on purpose (one per cached key)."""

    __slots__ = (
        "token",
        "key",
        "refresh_at",
        "margin_at",
        "expires",
        "wall_expires",
        "refresh_token",
        "extra",
        "revoked_jti",
    )

    def __init__(
        self,
        token: str,
        key: CacheKey,
        refresh_at: float,
        margin_at: float,
        expires: float,
        wall_expires: float,
        refresh_token: Optional[str] = None,
        extra: Optional[Dict[str, Any]] = None,
        revoked_jti: Optional[str] = None,
    ) -> None:
        self.token = token
        self.key = key
        self.refresh_at = refresh_at
        self.margin_at = margin_at
        self.expires = expires
        self.wall_expires = wall_expires
        self.refresh_token = refresh_token
        self.extra = extra
        #: Set on a tombstone: the server revoked this token; the next lookup raises.
        self.revoked_jti = revoked_jti

    def state(self, now: float) -> EntryState:
        """The entry's phase at ``now`` (the hit path keeps its own inline FRESH compare)."""
        if now < self.refresh_at:
            return EntryState.FRESH
        if now < self.margin_at:
            return EntryState.STALE
        if now < self.expires:
            return EntryState.MARGIN
        return EntryState.EXPIRED

    def revoked_copy(self, jti: str) -> "Entry":
        """A tombstone: never fresh, so the next lookup takes the slow path and raises."""
        return Entry(
            self.token, self.key, _NEVER, _NEVER, self.expires, self.wall_expires, None, self.extra, jti
        )

    def __repr__(self) -> str:
        return "Entry(key={!r}, expires={:.1f})".format(self.key, self.expires)


class TokenCache:
    """Bounded LRU of entries. Not thread-safe for writes: the owner holds a lock."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        #: canonical key -> entry, least recently used first (the hit path bumps recency here).
        self.lru: "OrderedDict[CacheKey, Entry]" = OrderedDict()
        #: every spelling of a key callers have used -> entry (the hit path reads this, lock-free).
        self.by_spelling: Dict[Hashable, Entry] = {}
        self._aliases: Dict[CacheKey, Tuple[Hashable, ...]] = {}
        #: no entry expires before this (a lower bound): a full cache looks for expired entries
        #: only once one can exist, instead of scanning every entry on every insert.
        self._earliest_expiry = float("inf")

    def __len__(self) -> int:
        return len(self.lru)

    def get(self, key: CacheKey) -> Optional[Entry]:
        return self.lru.get(key)

    def entries(self) -> List[Entry]:
        """A snapshot of the entries (the caller holds the owner's lock)."""
        return list(self.lru.values())

    def put(self, entry: Entry, now: float) -> None:
        """Insert or replace; past ``maxsize``, expired entries go first, then the least recent."""
        key = entry.key
        self.lru[key] = entry
        self.lru.move_to_end(key)
        self.by_spelling[key] = entry
        for alias in self._aliases.get(key, ()):
            self.by_spelling[alias] = entry
        self._earliest_expiry = min(self._earliest_expiry, entry.expires)
        if len(self.lru) > self.maxsize:
            if now >= self._earliest_expiry:
                for old in [e for e in self.lru.values() if e.expires <= now]:
                    self.remove(old.key)
                self._earliest_expiry = min((e.expires for e in self.lru.values()), default=float("inf"))
            while len(self.lru) > self.maxsize:
                self.remove(next(iter(self.lru)))

    def alias(self, raw: Hashable, entry: Entry) -> None:
        """Let the lock-free path find ``entry`` under another spelling of its key."""
        if raw == entry.key:
            self.by_spelling[raw] = entry
            return
        known = self._aliases.get(entry.key, ())
        if raw in known:
            self.by_spelling[raw] = entry
        elif len(known) < _MAX_ALIASES:
            self._aliases[entry.key] = known + (raw,)
            self.by_spelling[raw] = entry

    def remove(self, key: CacheKey) -> Optional[Entry]:
        entry = self.lru.pop(key, None)
        self.by_spelling.pop(key, None)
        for alias in self._aliases.pop(key, ()):
            self.by_spelling.pop(alias, None)
        return entry

    def forget_spellings(self) -> None:
        """Empty the hit path's dict: every next lookup takes the slow path once (after a fork)."""
        self.by_spelling.clear()
        self._aliases.clear()

    def clear(self) -> None:
        self.by_spelling.clear()
        self.lru.clear()
        self._aliases.clear()
        self._earliest_expiry = float("inf")

"""``RedisTokenStore``: the fleet's shared token store on Redis or Valkey."""

import hmac
import logging
import math
from contextlib import contextmanager
from typing import Iterator, Mapping, Optional, Protocol, Sequence, Tuple, Union

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from oculus_lite.exceptions import ConfigurationError, NetworkError, NetworkTimeoutError
from oculus_lite.store import SharedToken, StoreKey, ThrottledWarnings

from ._seal import Names, Sealer, sealer_for

__all__ = ["RedisClient", "RedisPipeline", "RedisScript", "RedisTokenStore"]

log = logging.getLogger("oculus_lite.store")

_MIN_STORE_KEY = 32
_WARN_EVERY = 60.0

# Write only when the new token outlives what is there (PTTL is -2 when missing, -1 without
# expiry): the fence that keeps a slow old leader from replacing a newer token.
_PUT_IF_LONGER = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_COMPARE_AND_DELETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_COMPARE_AND_PEXPIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisPipeline(Protocol):
    """The part of a redis-py pipeline the store uses."""

    def get(self, name: str) -> object: ...

    def pttl(self, name: str) -> object: ...

    def execute(self) -> Sequence[object]: ...


class RedisScript(Protocol):
    """A registered Lua script (redis-py's ``Script``)."""

    def __call__(self, keys: Sequence[str] = ..., args: Sequence[Union[bytes, str, int]] = ...) -> object: ...


class RedisClient(Protocol):
    """What the store needs of a client: ``redis.Redis``, ``redis.cluster.RedisCluster``, a
    Sentinel's ``master_for(...)``, or ``valkey.Valkey`` all fit."""

    def pipeline(self, transaction: bool = ...) -> RedisPipeline: ...

    def register_script(self, script: str) -> RedisScript: ...

    def set(self, name: str, value: bytes, *, px: Optional[int] = ..., nx: bool = ...) -> object: ...

    def get(self, name: str) -> object: ...

    def pttl(self, name: str) -> object: ...

    def close(self) -> None: ...


class RedisTokenStore:
    """A token store shared by every process and host that reaches one Redis (or Valkey).

    Args:
        client: a redis-py-compatible client you configured (TLS, ACL, Sentinel's
            ``master_for``, ``RedisCluster``, a ``valkey`` client), used as is and not closed by
            ``close()``. Its timeouts and retries are yours: keep them short, with no retries.
            It must return bytes (``decode_responses=False``, the default).
        url: or a URL: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS
            (certificates verified), ``unix:///path.sock``. The store then owns its client,
            with ``socket_timeout`` and ``connect_timeout`` and no retries.
        store_key: 32 or more secret random bytes the whole fleet shares, from which key names
            and the sealing key are derived (for clients without a shared secret, or to rotate
            on purpose). Default: the client's key material, derived from its client secret, so
            a secret rotation moves the fleet to fresh keys by itself.
        allow_unencrypted: **store access tokens in clear.** Anyone who can read the Redis
            (its operators, backups, replicas, a leaked ACL password) can then read and use the
            tokens. Values keep an HMAC (a moved or edited value is a miss) and key names stay
            HMACs, but nothing hides the token. Only for a Redis you trust like process memory.

    Every call raises ``NetworkTimeoutError`` or ``NetworkError`` on a store fault and never
    retries; a value that does not open is a miss (and is deleted), never an error. Message
    texts never carry the URL, a key, or a value.
    """

    def __init__(
        self,
        client: Optional[RedisClient] = None,
        *,
        url: Optional[str] = None,
        store_key: Optional[bytes] = None,
        allow_unencrypted: bool = False,
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.25,
    ) -> None:
        if (client is None) == (url is None):
            raise ConfigurationError("RedisTokenStore needs exactly one of client= or url=")
        if store_key is not None and (not isinstance(store_key, bytes) or len(store_key) < _MIN_STORE_KEY):
            raise ConfigurationError(
                "store_key must be at least {} secret random bytes (e.g. secrets.token_bytes(32))".format(
                    _MIN_STORE_KEY
                )
            )
        _check_timeout("socket_timeout", socket_timeout)
        _check_timeout("connect_timeout", connect_timeout)
        self._owns_client = client is None
        if client is None:
            client = _client_from_url(url or "", socket_timeout, connect_timeout)
        else:
            _check_returns_bytes(client)
        self._client: RedisClient = client
        self._store_key = store_key
        self._sealed = not allow_unencrypted
        self._put_script = client.register_script(_PUT_IF_LONGER)
        self._delete_script = client.register_script(_COMPARE_AND_DELETE)
        self._extend_script = client.register_script(_COMPARE_AND_PEXPIRE)
        self._closed = False
        self._warnings = ThrottledWarnings(log, _WARN_EVERY)

    def __repr__(self) -> str:
        return "RedisTokenStore(encrypted={})".format(self._sealed)

    def get(self, key: StoreKey) -> Optional[SharedToken]:
        sealer, names = self._names(key)
        with _faults("get"):
            pipe = self._client.pipeline(transaction=True)
            pipe.get(names.token)
            pipe.pttl(names.token)
            value, pttl = pipe.execute()
        if value is None:
            return None
        token = None
        if isinstance(pttl, int) and pttl > 0:
            token = sealer.unseal(names.token, value, pttl / 1000.0)
        if token is None and not (isinstance(pttl, int) and pttl == -2):
            self._warnings.warn("Redis token store: deleted a value that does not open (key %s)", names.token)
            self._delete(names.token, value)
        return token

    def acquire(self, key: StoreKey, owner: str, seconds: float) -> bool:
        _, names = self._names(key)
        with _faults("acquire"):
            return bool(self._client.set(names.lease, owner.encode("utf-8"), nx=True, px=_millis(seconds)))

    def extend(self, key: StoreKey, owner: str, seconds: float) -> bool:
        _, names = self._names(key)
        with _faults("extend"):
            return self._extend_script(keys=[names.lease], args=[owner, _millis(seconds)]) == 1

    def release(self, key: StoreKey, owner: str) -> None:
        _, names = self._names(key)
        self._delete(names.lease, owner.encode("utf-8"))

    def put(self, key: StoreKey, token: SharedToken) -> None:
        life = token.expires_in
        if not isinstance(life, (int, float)) or not math.isfinite(life) or life <= 0:
            return
        sealer, names = self._names(key)
        value = sealer.seal(names.token, token)
        with _faults("put"):
            self._put_script(keys=[names.token], args=[value, max(1, int(life * 1000))])

    def invalidate(self, key: StoreKey, access_token: str) -> None:
        sealer, names = self._names(key)
        with _faults("invalidate"):
            value = self._client.get(names.token)
        if value is None:
            return
        current = sealer.unseal(names.token, value, 0.0)
        if current is None or hmac.compare_digest(
            current.access_token.encode("utf-8"), access_token.encode("utf-8")
        ):
            self._delete(names.token, value)  # exactly the bytes we read: a newer token stays

    def cool_down(self, key: StoreKey, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
            return
        _, names = self._names(key)
        with _faults("cool_down"):
            self._client.set(names.cool, b"1", px=_millis(seconds))

    def cooling(self, key: StoreKey) -> float:
        _, names = self._names(key)
        with _faults("cooling"):
            left = self._client.pttl(names.cool)
        return left / 1000.0 if isinstance(left, int) and left > 0 else 0.0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()

    def _names(self, key: StoreKey) -> Tuple[Sealer, Names]:
        sealer = sealer_for(
            self._store_key if self._store_key is not None else key.key_material, self._sealed
        )
        return sealer, sealer.names(key)

    def _delete(self, name: str, expected: object) -> None:
        if not isinstance(expected, bytes):
            return
        with _faults("delete"):
            self._delete_script(keys=[name], args=[expected])


def _millis(seconds: float) -> int:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError("a lease or cool-down needs a positive number of seconds")
    return max(1, int(seconds * 1000))


def _check_timeout(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigurationError("{} must be a positive number of seconds".format(name))


def _client_from_url(url: str, socket_timeout: float, connect_timeout: float) -> RedisClient:
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
    except (ValueError, TypeError):
        # never repeat the URL: it may carry a password
        raise ConfigurationError(
            "url is not a Redis URL this store can use: redis://[user:password@]host:port/db, rediss://... "
            "(TLS) or unix:///path.sock"
        ) from None


def _check_returns_bytes(client: RedisClient) -> None:
    options = getattr(client, "get_connection_kwargs", None)
    try:
        kwargs = options() if callable(options) else None
    except Exception:  # a client that cannot say: its replies are checked as they come
        kwargs = None
    if isinstance(kwargs, Mapping) and kwargs.get("decode_responses"):
        raise ConfigurationError(
            "the Redis client decodes replies to str (decode_responses=True); the token store "
            "needs a client that returns bytes"
        )


@contextmanager
def _faults(operation: str) -> Iterator[None]:
    """Store faults as oculus_lite's network errors, without the backend's arguments."""
    try:
        yield
    except redis.exceptions.TimeoutError as exc:
        raise NetworkTimeoutError(
            "Redis token store: {} timed out ({})".format(operation, _describe(exc)), code="store_timeout"
        ) from None
    except (redis.exceptions.RedisError, OSError) as exc:
        raise NetworkError(
            "Redis token store: {} failed ({})".format(operation, _describe(exc)), code="store_error"
        ) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    name = type(exc).__name__
    return "{}: {}".format(name, text[:200]) if text else name

"""oculus_lite token store on Redis or Valkey: a whole fleet of processes and hosts asks the
token service for one token per key per lifetime.

    from oculus_lite_redis import RedisTokenStore
    Client(..., store=RedisTokenStore(url="rediss://fleet:password@redis.internal:6379/0"))

or ``OCULUS_TOKEN_STORE=rediss://...`` in the environment. Key names are HMACs (Redis holds
no client id, scope or audience) and values are sealed with AES-256-GCM under a key derived
from the client secret (or an explicit ``store_key``); an ACL user limited to ``~oculus:*``
and the commands GET, SET, DEL, PTTL, PEXPIRE, EVAL, EVALSHA, SCRIPT LOAD, MULTI and EXEC is
enough. Requires Redis 6 or later (or Valkey).
"""

try:
    import cryptography  # noqa: F401
    import redis  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "oculus_lite_redis needs the {!r} package: pip install oculus-lite-redis".format(_exc.name),
        name=_exc.name,
    ) from _exc

from ._store import RedisClient, RedisPipeline, RedisScript, RedisTokenStore

__all__ = ["RedisClient", "RedisPipeline", "RedisScript", "RedisTokenStore", "__version__"]
__version__ = "0.1.0"

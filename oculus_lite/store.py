"""Token stores shared by a fleet: the public surface for users and for store plugin authors.

A store implements ``TokenStore`` (a few short, bounded calls: read, lease, put-if-longer,
compare-and-delete, cool-down); the client runs the whole cross-process protocol on top of it.
``FileTokenStore`` ships in the core (one host); ``oculus_lite_redis.RedisTokenStore`` is the
Redis/Valkey plugin. See docs/fleet.md.
"""

from .tokens._file_store import FileTokenStore
from .tokens._store import SharedToken, StoreKey, ThrottledWarnings, TokenStore, hkdf_sha256, key_material_for
from .tokens._store_spec import open_store, store_from_environment

__all__ = [
    "FileTokenStore",
    "SharedToken",
    "StoreKey",
    "ThrottledWarnings",
    "TokenStore",
    "hkdf_sha256",
    "key_material_for",
    "open_store",
    "store_from_environment",
]

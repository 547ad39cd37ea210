"""Key names and sealed values: what the Redis store writes, and how it reads it back.

From one secret (the client's key material, or an explicit ``store_key``) HKDF derives a
naming key (key names are HMACs, so Redis holds no client id, scope or audience) and a
sealing key. A sealed value is ``b"v1" || nonce(12) || AES-256-GCM(k_seal, nonce, json)``
with the full key name as associated data, so a value moved to another key, edited,
truncated or sealed under another secret does not open. The plaintext form (only with
``allow_unencrypted=True``) is ``b"p1" || HMAC-SHA256(k_tag, name, json) || json``: integrity
still, secrecy none; it lives under other key names, so the two forms never meet.
"""

import functools
import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from typing import Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oculus_lite.store import SharedToken, StoreKey, hkdf_sha256

__all__ = ["Names", "Sealer", "sealer_for"]

_SALT = b"oculus-lite/redis-store/v1"
_SEALED = b"v1"
_PLAIN = b"p1"
_NONCE = 12
_TAG = 32


@dataclass(frozen=True)
class Names:
    """The three keys of one entry; the hash tag keeps them in one Redis Cluster slot."""

    token: str
    lease: str
    cool: str


@dataclass(frozen=True)
class Sealer:
    """Names and seals the entries of one secret; ``repr`` shows no key."""

    sealed: bool
    name_key: bytes = field(repr=False)
    value_key: bytes = field(repr=False)

    def names(self, key: StoreKey) -> Names:
        base = "oculus:v1:{" + key.slot(self.name_key) + "}"
        return Names(base + ":tok", base + ":lease", base + ":cool")

    def seal(self, name: str, token: SharedToken) -> bytes:
        payload = json.dumps(
            {
                "access_token": token.access_token,
                "token_type": token.token_type,
                "scope": token.scope,
                "service_token": token.service_token,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        if not self.sealed:
            return _PLAIN + self._tag(name, payload) + payload
        nonce = os.urandom(_NONCE)
        return _SEALED + nonce + _aead(self.value_key).encrypt(nonce, payload, name.encode("utf-8"))

    def unseal(self, name: str, value: object, expires_in: float) -> Optional[SharedToken]:
        """The token in ``value`` stored under ``name``, or None when it does not open."""
        if not isinstance(value, bytes):
            return None
        payload = self._payload(name, value)
        if payload is None:
            return None
        try:
            fields = json.loads(payload.decode("utf-8"))
        except ValueError:
            return None
        if not isinstance(fields, dict):
            return None
        access_token = fields.get("access_token")
        token_type = fields.get("token_type")
        scope = fields.get("scope")
        service_token = fields.get("service_token")
        if (
            not isinstance(access_token, str)
            or not access_token
            or not isinstance(token_type, str)
            or not (scope is None or isinstance(scope, str))
            or not (service_token is None or isinstance(service_token, str))
        ):
            return None
        return SharedToken(access_token, expires_in, token_type, scope, service_token)

    def _payload(self, name: str, value: bytes) -> Optional[bytes]:
        if self.sealed:
            if not value.startswith(_SEALED) or len(value) < len(_SEALED) + _NONCE + 16:
                return None
            nonce = value[len(_SEALED) : len(_SEALED) + _NONCE]
            try:
                return _aead(self.value_key).decrypt(
                    nonce, value[len(_SEALED) + _NONCE :], name.encode("utf-8")
                )
            except InvalidTag:
                return None
        head = len(_PLAIN) + _TAG
        if not value.startswith(_PLAIN) or len(value) < head:
            return None
        payload = value[head:]
        if not hmac.compare_digest(value[len(_PLAIN) : head], self._tag(name, payload)):
            return None
        return payload

    def _tag(self, name: str, payload: bytes) -> bytes:
        return hmac.new(
            self.value_key, _PLAIN + name.encode("utf-8") + b"\0" + payload, hashlib.sha256
        ).digest()


@functools.lru_cache(maxsize=64)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(key)


@functools.lru_cache(maxsize=64)
def sealer_for(secret: bytes, sealed: bool) -> Sealer:
    """The sealer of one secret; the plaintext form names its keys apart."""
    if sealed:
        return Sealer(
            True, hkdf_sha256(secret, salt=_SALT, info=b"name"), hkdf_sha256(secret, salt=_SALT, info=b"seal")
        )
    return Sealer(
        False,
        hkdf_sha256(secret, salt=_SALT, info=b"name-unencrypted"),
        hkdf_sha256(secret, salt=_SALT, info=b"tag-unencrypted"),
    )

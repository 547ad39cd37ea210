"""A token store named by a string, for twelve-factor deployments (``OCULUS_TOKEN_STORE``).

Accepted forms:

- ``file:`` the file store in its default private directory;
- ``file:/absolute/path`` (or ``file:///absolute/path``) the file store in that directory;
- ``redis://...`` and ``rediss://...`` the Redis store of the ``oculus-lite-redis`` plugin
  (TLS with ``rediss://``; ACL user and password in the URL).

``OCULUS_LAMBDA_CACHE=true`` (the official SDK's switch) selects the file store when
``OCULUS_TOKEN_STORE`` is unset. Messages never repeat a Redis URL: it may hold a password.
"""

import importlib
import os
import re
from typing import Mapping, Optional

from ..exceptions import ConfigurationError
from ._file_store import FileTokenStore
from ._store import TokenStore

__all__ = ["open_store", "store_from_environment"]

_FORMS = "file:, file:/absolute/path, redis://..., rediss://..."
_PLUGIN = "oculus_lite_redis"


def open_store(spec: str) -> TokenStore:
    """The store ``spec`` names; ``ConfigurationError`` says what to fix when it names none."""
    return _open(spec, "token store")


def store_from_environment(environ: Optional[Mapping[str, str]] = None) -> Optional[TokenStore]:
    """The store ``OCULUS_TOKEN_STORE`` names, the file store when ``OCULUS_LAMBDA_CACHE`` is
    ``true`` (any case), else None. ``environ`` defaults to ``os.environ``."""
    env = os.environ if environ is None else environ
    spec = env.get("OCULUS_TOKEN_STORE", "").strip()
    if spec:
        return _open(spec, "OCULUS_TOKEN_STORE")
    if env.get("OCULUS_LAMBDA_CACHE", "").strip().lower() == "true":
        return FileTokenStore()
    return None


def _open(spec: str, what: str) -> TokenStore:
    if not isinstance(spec, str):
        raise ConfigurationError("{} must be a string: {}".format(what, _FORMS))
    spec = spec.strip()
    scheme = spec.split(":", 1)[0].lower() if ":" in spec else ""
    if scheme == "file":
        return FileTokenStore(_file_path(spec[len("file:") :], what))
    if scheme in ("redis", "rediss"):
        return _redis_store(spec, what)
    shown = (
        " (got a {!r} form)".format(scheme + ":") if re.fullmatch(r"[a-z][a-z0-9+.-]{0,15}", scheme) else ""
    )
    raise ConfigurationError(
        "{} is not a store this client knows{}; use one of: {}".format(what, shown, _FORMS)
    )


def _file_path(rest: str, what: str) -> Optional[str]:
    if not rest:
        return None
    if rest.startswith("//"):  # the URL form: file:///absolute/path, with no host
        if not rest.startswith("///"):
            raise ConfigurationError(
                "{}: a file store has no host; write file:/absolute/path or file:///absolute/path".format(
                    what
                )
            )
        rest = rest[2:]
    if not os.path.isabs(rest):
        raise ConfigurationError(
            "{}: the file store's directory must be an absolute path (file:/absolute/path), "
            "got a relative one".format(what)
        )
    return rest


def _redis_store(url: str, what: str) -> TokenStore:
    try:
        plugin = importlib.import_module(_PLUGIN)
    except ModuleNotFoundError as exc:
        missing = "" if exc.name == _PLUGIN else " (its dependency {!r} is missing)".format(exc.name)
        raise ConfigurationError(
            "{} names a Redis store, which needs the plugin{}: pip install oculus-lite-redis".format(
                what, missing
            )
        ) from None
    store: TokenStore = plugin.RedisTokenStore(url=url)
    return store

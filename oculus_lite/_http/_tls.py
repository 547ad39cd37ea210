"""TLS contexts from a ``verify`` value: one verifying context per process, built on first use."""

import threading
from typing import TYPE_CHECKING, Optional, Union

from ..exceptions import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    import ssl

__all__ = ["VerifyTypes", "default_ssl_context", "ssl_context_for"]

#: ``True`` (system CAs), ``False`` (no verification: tests only), a CA bundle path, or a context.
VerifyTypes = Union[bool, str, "ssl.SSLContext"]

_ssl_lock = threading.Lock()
_default_context: Optional["ssl.SSLContext"] = None


def default_ssl_context() -> "ssl.SSLContext":
    """The verifying TLS context, built once per process on first HTTPS use (it costs ~15 ms)."""
    global _default_context
    ctx = _default_context
    if ctx is None:
        with _ssl_lock:
            if _default_context is None:
                import ssl

                new = ssl.create_default_context()
                new.minimum_version = ssl.TLSVersion.TLSv1_2
                _default_context = new
            ctx = _default_context
    return ctx


def ssl_context_for(verify: VerifyTypes) -> "ssl.SSLContext":
    import ssl

    if verify is True:
        return default_ssl_context()
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, str):
        try:
            ctx = ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                "verify={!r}: cannot load that CA bundle ({}); pass a PEM file path, "
                "an ssl.SSLContext or True".format(verify, exc.__class__.__name__)
            ) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
    if isinstance(verify, ssl.SSLContext):
        return verify
    raise ConfigurationError(
        "verify must be True, False, a CA bundle path or an ssl.SSLContext, not {}".format(
            type(verify).__name__
        )
    )

"""What counts as a loopback host (never proxied; plain http allowed)."""

import ipaddress

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` itself and literal loopback addresses (127.0.0.0/8, ::1). Not for
    ``*.localhost``: a resolver (or a proxy, or /etc/hosts) may send such a name anywhere."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

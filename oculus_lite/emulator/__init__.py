"""A local emulator of the Oculus token service (and the Agent OTP approval service).

For tests and demos with no network and no account: tokens with SDK service tokens, the JWKS
and revocation list, capability maps, credentials, the audit sink, delegation and
enrollment, so oculus_lite and the official SDK both run against it unchanged::

    from oculus_lite.emulator import Emulator

    with Emulator() as emu:
        emu.url, emu.demo_client_id, emu.demo_client_secret
        emu.add_agent("agent", "secret", scopes=["stripe.customers.read"])
        emu.set_capability_map({"stripe": {"capabilities": {"stripe.customers.read": {}}}})
        emu.set_credential("stripe", "api_key", "sk_test_...")

Names load on first use so that the pytest plugin in this package (and
``import oculus_lite``) stay cheap: ``http.server`` is imported only when an
emulator is really wanted.
"""

from typing import TYPE_CHECKING, Any, List

if TYPE_CHECKING:  # pragma: no cover
    from ._emulator import Emulator
    from ._serve import run_server

__all__ = ["Emulator", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from ._emulator import Emulator

        return Emulator
    if name == "run_server":
        from ._serve import run_server

        return run_server
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))


def __dir__() -> List[str]:
    return sorted(list(globals()) + __all__)

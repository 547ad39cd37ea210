"""``transport=`` and ``verify=`` together, through the registry every client uses:
verify reaches a transport built by name or by default, and is refused for a
transport object (its TLS is its own) instead of being silently dropped."""

from typing import Any

import pytest

from oculus_lite._http import _registry
from oculus_lite.exceptions import ConfigurationError, TLSError
from oculus_lite.transport import Request, UrllibTransport, get_transport, resolve_transport

from ._server import ScriptedServer


def _get(transport: Any, url: str) -> int:
    status: int = transport.request(Request("GET", url, timeout=10)).status
    return status


@pytest.mark.parametrize("name", [None, "urllib", "pooled"])
def test_verify_reaches_the_built_in_transport(name: Any, tls_server: ScriptedServer, ca_file: str) -> None:
    with resolve_transport(name, verify=ca_file) as trusting:  # type: ignore[union-attr]
        assert _get(trusting, tls_server.url("/echo")) == 200
    with resolve_transport(name) as default:  # type: ignore[union-attr]
        with pytest.raises(TLSError):
            _get(default, tls_server.url("/echo"))


def test_verify_with_a_transport_object_is_refused() -> None:
    mine = UrllibTransport()
    with pytest.raises(ConfigurationError, match="verify"):
        resolve_transport(mine, verify="/some/ca.pem")
    with pytest.raises(ConfigurationError, match="verify"):
        resolve_transport(mine, verify=False)
    assert resolve_transport(mine) is mine  # verify left alone: the object is used as is


def test_a_bad_verify_for_a_named_transport_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="CA bundle"):
        resolve_transport("pooled", verify="/nonexistent/ca.pem")


def test_a_factory_without_verify_refuses_one_and_works_without(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_registry._registry, "plain", lambda: UrllibTransport())
    plain = resolve_transport("plain")
    assert isinstance(plain, UrllibTransport)
    with pytest.raises(ConfigurationError, match="does not accept verify"):
        resolve_transport("plain", verify="/some/ca.pem")


def test_a_registered_factory_is_given_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def factory(**kwargs: Any) -> UrllibTransport:
        seen.append(kwargs)
        return UrllibTransport(**kwargs)

    monkeypatch.setitem(_registry._registry, "mine", factory)
    get_transport("mine")
    get_transport("mine", verify=False)
    assert seen == [{}, {"verify": False}]


def test_unknown_names_say_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="no plugin registers it"):
        get_transport("no-such-transport")
    with pytest.raises(ConfigurationError, match="pip install oculus-lite-pyodide"):
        get_transport("pyodide")  # a plugin only Pyodide can install

"""Proxies from the environment, through every transport that claims to read them:
HTTPS through a CONNECT tunnel (TLS still verified end to end, proxy credentials
sent to the proxy only), plain HTTP in absolute form, NO_PROXY honoured, and
loopback never proxied. ``oculus.test`` is a name only the test proxy knows."""

import base64
import json

import pytest

from oculus_lite.exceptions import NetworkError, TLSError

from ._proxy import Proxy
from ._server import ScriptedServer
from .conftest import Harness

HOST = "oculus.test"


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for variant in (name, name.lower()):
            if name in values:
                monkeypatch.setenv(variant, values[name])
            else:
                monkeypatch.delenv(variant, raising=False)


@pytest.fixture(autouse=True)
def _needs_env_proxies(harness: Harness) -> None:
    if not harness.backend.env_proxies:
        pytest.skip("{} never reads proxies from the environment".format(harness.backend.name))


def test_https_goes_through_connect_tunnel(
    harness: Harness, tls_server: ScriptedServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Proxy(tls_server.port) as proxy:
        _env(
            monkeypatch,
            HTTPS_PROXY=proxy.url.replace("http://", "http://agent:pa%3Ass@"),
            NO_PROXY="localhost",
        )
        t = harness.make(verify=ca_file)
        resp = harness.get(t, "https://{}:{}/echo".format(HOST, tls_server.port))
        assert resp.status == 200
        sent = dict(json.loads(resp.body)["headers"])
        assert "proxy-authorization" not in sent  # credentials for the proxy stay with the proxy
        method, target, auth = proxy.seen[0]
        assert (method, target) == ("CONNECT", "{}:{}".format(HOST, tls_server.port))
        assert auth == "Basic " + base64.b64encode(b"agent:pa:ss").decode()
        assert tls_server.hit_count("/echo") == 1


def test_tunnel_still_verifies_the_origin_certificate(
    harness: Harness, tls_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Proxy(tls_server.port) as proxy:
        _env(monkeypatch, HTTPS_PROXY=proxy.url)
        with pytest.raises(TLSError):
            harness.get(harness.make(), "https://{}:{}/echo".format(HOST, tls_server.port))
        assert [s[0] for s in proxy.seen] == ["CONNECT"]
        assert tls_server.hit_count("/echo") == 0


def test_plain_http_goes_through_proxy(
    harness: Harness, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Proxy(server.port) as proxy:
        _env(monkeypatch, HTTP_PROXY=proxy.url)
        resp = harness.get(harness.make(), "http://{}:{}/echo?a=1".format(HOST, server.port))
        assert resp.status == 200
        assert json.loads(resp.body)["path"] == "/echo?a=1"
        assert proxy.seen[0][:2] == ("GET", "http://{}:{}/echo?a=1".format(HOST, server.port))


def test_no_proxy_is_honoured(
    harness: Harness, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Proxy(server.port) as proxy:
        _env(monkeypatch, HTTP_PROXY=proxy.url, NO_PROXY="example.org,{}".format(HOST))
        with pytest.raises(NetworkError):  # direct: the name does not resolve
            harness.get(harness.make(), "http://{}:{}/echo".format(HOST, server.port), timeout=5)
        assert proxy.seen == []


def test_loopback_is_never_proxied(
    harness: Harness, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Proxy(server.port) as proxy:
        _env(monkeypatch, HTTP_PROXY=proxy.url, HTTPS_PROXY=proxy.url, ALL_PROXY=proxy.url)
        t = harness.make()
        assert harness.get(t, server.url("/echo")).status == 200
        assert harness.get(t, "http://localhost:{}/echo".format(server.port)).status == 200
        assert proxy.seen == []
        assert server.hit_count("/echo") == 2

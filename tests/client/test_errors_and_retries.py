"""Error mapping, hints, retries and the safety rules of the default transport."""

import pytest

from oculus_lite import (
    AuthenticationError,
    Client,
    ClientClosedError,
    ForbiddenError,
    InvalidResponseError,
    ManualClock,
    NetworkError,
    NetworkTimeoutError,
    OculusAPIError,
    OculusAuthError,
    OculusError,
    OculusStartupError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    ValidationError,
)
from oculus_lite.emulator import Emulator


def test_wrong_secret_is_401_with_hint(make_client, canary):
    client = make_client(client_secret="wrong-" + canary)
    with pytest.raises(AuthenticationError) as info:
        client.get_token("db:read")
    err = info.value
    assert isinstance(err, OculusAuthError) and isinstance(err, OculusAPIError)
    assert err.status_code == 401 and err.code == "invalid_client"
    text = str(err)
    for cause in ("credentials not loaded", "not Active", "rotated", "base_url"):
        assert cause in text
    assert canary not in text and canary not in repr(err)


def test_rotation_makes_the_old_secret_fail_at_once(emulator, make_client, token_requests):
    client = make_client()
    client.get_token("db:read")
    new_secret = emulator.rotate_secret("agent-1")
    with pytest.raises(AuthenticationError):
        client.get_token("db:write")
    # the token cached before the rotation is still valid and still served
    assert client.get_token("db:read")
    fresh = make_client(client_secret=new_secret)
    assert fresh.get_token("db:write")


@pytest.mark.parametrize("status, code", [("suspended", "agent_suspended"), ("revoked", "agent_revoked")])
def test_inactive_agents_get_401(emulator, make_client, status, code):
    emulator.set_status("agent-1", status)
    with pytest.raises(AuthenticationError) as info:
        make_client().get_token("db:read")
    assert info.value.code == code


def test_ungranted_scope_is_403_with_policy_hint(make_client):
    with pytest.raises(ForbiddenError) as info:
        make_client().get_token("stripe:customer:read")
    err = info.value
    assert isinstance(err, OculusAuthError) and err.status_code == 403
    assert "stripe:customer:read" in str(err) and "Shadow Mode" in str(err)


def test_403_on_the_default_grant_says_no_scope_was_requested(emulator, make_client):
    emulator.add_agent("defaulted", "default-secret", scopes=["db:read"], default_scopes=["billing:read"])
    client = make_client(client_id="defaulted", client_secret="default-secret")
    with pytest.raises(OculusStartupError) as info:
        client.startup()
    cause = info.value.__cause__
    assert isinstance(cause, ForbiddenError) and info.value.step == "fetch_token"
    assert "grants the scopes of its default grant (none were requested; pass scopes= to choose)" in str(
        cause
    )
    assert "grants scope ''" not in str(info.value)


def test_shadow_mode_policy_does_not_grant(emulator, make_client):
    emulator.add_agent(
        "shadowed",
        "shadow-secret",
        policies=[{"name": "p", "scopes": ["billing:*"], "mode": "shadow"}],
    )
    with pytest.raises(ForbiddenError) as info:
        make_client(client_id="shadowed", client_secret="shadow-secret").get_token("billing:invoice:read")
    assert info.value.code == "policy_shadow_mode"


def test_rfc6749_error_bodies_are_parsed(emulator, make_client):
    emulator.add_agent("rfc", "rfc-secret", scopes=["db:*"], error_style="rfc6749")
    with pytest.raises(AuthenticationError) as info:
        make_client(client_id="rfc", client_secret="not-it").get_token("db:read")
    assert info.value.code == "invalid_client"


def test_non_json_error_body_still_gives_a_clear_error(emulator, make_client, clock):
    emulator.set_faults(
        [
            {
                "path": "/oauth/token",
                "kind": "status",
                "status": 502,
                "every": 1,
                "body": "<html>bad gateway</html>",
            }
        ]
    )
    with pytest.raises(ServerError) as info:
        make_client(retries=1).get_token("db:read")
    assert "502" in str(info.value) and "non-JSON" in str(info.value)


def test_5xx_is_retried(emulator, make_client, token_requests, clock):
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 503, "next": 2}])
    assert make_client().get_token("db:read")
    assert token_requests() == 3


def test_connection_close_is_retried(emulator, make_client, token_requests, clock):
    emulator.set_faults([{"path": "/oauth/token", "kind": "close", "next": 1}])
    assert make_client().get_token("db:read")
    assert token_requests() == 2


def test_429_waits_for_retry_after(emulator, make_client, token_requests, clock):
    emulator.set_faults(
        [{"path": "/oauth/token", "kind": "status", "status": 429, "retry_after": 1, "next": 1}]
    )
    client = make_client()
    started = clock.monotonic()
    assert client.get_token("db:read")
    assert token_requests() == 2
    assert clock.monotonic() - started == pytest.approx(1.0)  # the Retry-After, not a backoff


def test_429_beyond_the_deadline_is_raised_with_retry_after(emulator, make_client, token_requests):
    emulator.set_faults(
        [{"path": "/oauth/token", "kind": "status", "status": 429, "retry_after": 120, "every": 1}]
    )
    with pytest.raises(RateLimitError) as info:
        make_client(timeout=2).get_token("db:read")
    assert info.value.retry_after == 120
    assert token_requests() == 1


def test_429_retry_after_holds_later_calls_without_a_request(emulator, make_client, token_requests, clock):
    """The service asked us to wait: until then a caller with no valid token gets RateLimitError
    at once, with the time left, and the service hears nothing."""
    emulator.set_faults(
        [{"path": "/oauth/token", "kind": "status", "status": 429, "retry_after": 120, "next": 1}]
    )
    client = make_client(timeout=2)
    with pytest.raises(RateLimitError):
        client.get_token("db:read")
    assert token_requests() == 1
    clock.advance(20)
    for _ in range(5):
        with pytest.raises(RateLimitError) as info:
            client.get_token("db:read")
        assert info.value.code == "cool_down"
        assert info.value.retry_after == pytest.approx(100.0)
        assert "100.0 s" in str(info.value)
    assert token_requests() == 1
    assert client.get_token("crm:read")  # another key is not held back
    assert token_requests() == 2
    clock.advance(100)
    assert client.get_token("db:read")
    assert token_requests() == 3


def test_429_during_a_refresh_keeps_serving_the_valid_token(emulator, make_client, token_requests, clock):
    client = make_client(timeout=2)
    token = client.get_token("db:read")
    emulator.set_faults(
        [{"path": "/oauth/token", "kind": "status", "status": 429, "retry_after": 600, "every": 1}]
    )
    entry = client._cache.get("db:read")
    clock.advance_to(entry.margin_at)  # this caller waits for the refresh, which meets the 429
    assert client.get_token("db:read") == token
    sent = token_requests()
    assert sent == 2
    while clock.monotonic() + 0.5 < entry.expires:
        clock.advance(0.5)  # past the usual 0.5 s backoff: the Retry-After still holds
        assert client.get_token("db:read") == token  # still valid: no request, no error
    assert token_requests() == sent
    clock.advance_to(entry.expires)
    with pytest.raises(RateLimitError) as info:  # expired, and still asked to wait
        client.get_token("db:read")
    assert info.value.code == "cool_down"
    assert token_requests() == sent


def test_other_4xx_are_not_retried(emulator, make_client, token_requests):
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 400, "every": 1}])
    with pytest.raises(ValidationError):
        make_client().get_token("db:read")
    assert token_requests() == 1


def test_the_whole_call_respects_timeout(emulator, make_client):
    # Real time (a socket timeout), as short as proves it: 0.2 s against a 3 s hang.
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 3000, "every": 1}])
    with pytest.raises(NetworkTimeoutError) as info:
        make_client(timeout=0.2).get_token("db:read")
    assert isinstance(info.value, NetworkError) and isinstance(info.value, TimeoutError)
    assert info.value.__cause__ is not None or "no time left" in str(info.value)


def test_connection_refused_is_a_network_error(canary):
    with Emulator() as emu:
        url = emu.url
    client = Client(
        "agent-1", canary, url, retries=1, timeout=2, revocation_interval=None, clock=ManualClock()
    )
    with pytest.raises(NetworkError) as info:
        client.get_token("db:read")
    assert "refused" in str(info.value) and canary not in str(info.value)
    client.stop()


def test_redirects_are_not_followed(emulator, make_client):
    with Emulator() as elsewhere:
        elsewhere.add_agent("agent-1", "x", scopes=["db:*"])
        emulator.set_faults(
            [
                {
                    "path": "/oauth/token",
                    "kind": "status",
                    "status": 307,
                    "location": elsewhere.url + "/oauth/token",
                    "every": 1,
                }
            ]
        )
        with pytest.raises(InvalidResponseError) as info:
            make_client().get_token("db:read")
        assert "redirect" in str(info.value)
        assert elsewhere.stats()["token_requests"] == 0


def test_body_cap(emulator, make_client):
    emulator.set_faults([{"path": "/oauth/token", "kind": "oversize", "size": 2 << 20, "every": 1}])
    with pytest.raises(ResponseTooLargeError):
        make_client().get_token("db:read")


def test_bad_json_success_body(emulator, make_client):
    emulator.set_faults([{"path": "/oauth/token", "kind": "badjson", "every": 1}])
    with pytest.raises(InvalidResponseError) as info:
        make_client().get_token("db:read")
    assert "not JSON" in str(info.value)


@pytest.mark.parametrize(
    "scope, audience, fragment",
    [
        ("", None, "empty"),
        ("   ", None, "empty"),
        (None, None, "string"),
        (42, None, "string"),
        (["db:read"], None, "string"),
        (b"db:read", None, "string"),
        ("db:read\r\nX-Injected: 1", None, "control"),
        ("db:read\x00", None, "control"),
        ("db:read", "https://a.example\r\nHost: evil", "control"),
        ("db:read", "", "empty"),
        ("db:read", 7, "string"),
        ("db:read", "two words", "spaces"),
        ("x" * 5000, None, "limit"),
    ],
)
def test_bad_arguments_are_refused_before_sending(make_client, token_requests, scope, audience, fragment):
    client = make_client()
    with pytest.raises(ValidationError) as info:
        client.get_token(scope, audience)
    assert fragment in str(info.value)
    assert token_requests() == 0


def test_use_after_stop(make_client):
    client = make_client()
    client.get_token("db:read")
    client.stop()
    client.stop()  # idempotent
    with pytest.raises(ClientClosedError):
        client.get_token("db:read")
    with pytest.raises(ClientClosedError):
        with client:
            pass


def test_every_error_is_an_oculus_error():
    for cls in (
        AuthenticationError,
        ForbiddenError,
        NetworkError,
        RateLimitError,
        ValidationError,
        ServerError,
    ):
        assert issubclass(cls, OculusError)


def test_failure_records_stay_bounded_over_many_failing_scopes(emulator, make_client, clock):
    emulator.set_faults([{"path": "/oauth/token", "kind": "status", "status": 503, "every": 1}])
    client = make_client(timeout=2, retries=0)
    for n in range(1100):
        with pytest.raises(ServerError):
            client.get_token("db:read:{}".format(n))
        clock.advance(1)  # each record's 0.5 s backoff is over before the next failure
    assert len(client._backoff) <= 1025
    with pytest.raises(ServerError):  # a record still waiting is kept
        client.get_token("db:read:1099")
    assert client._backoff["db:read:1099"][1] == 2

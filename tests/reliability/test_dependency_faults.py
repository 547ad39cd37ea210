"""Faults against the other endpoints: the revocation list, the JWKS and the permission service.

Revocation list and key set: a failed fetch raises (or is logged by the poller) as a typed
error, the last good list/key set stays in force, and the log says it is stale.
Permission polling: transient failures are retried and ``Retry-After`` is honoured.

Waits (poll intervals, backoff, Retry-After) run on a ``ManualClock``; only the hung
server (``delay``) takes real time, as short as a socket timeout proves it.
"""

import logging
from typing import Any, Dict, List

import pytest

from oculus_lite import OculusError, PermissionClient, ServerError
from oculus_lite.jwt import JwksVerifier
from oculus_lite.transport import UrllibTransport
from oculus_lite.verify._revocation import RevocationList

REVOKED = "/oauth/revoked-tokens"
JWKS = "/.well-known/jwks.json"

KINDS: Dict[str, Dict[str, Any]] = {
    "status-500": {"kind": "status", "status": 500},
    "status-429": {"kind": "status", "status": 429, "retry_after": "120"},
    "delay": {"kind": "delay", "delay_ms": 3000},
    "close": {"kind": "close"},
    "truncate": {"kind": "truncate"},
    "badjson": {"kind": "badjson"},
    "oversize": {"kind": "oversize", "size": 2 << 20},
    "content_type": {"kind": "content_type"},
}


def timeout_for(name: str) -> float:
    """A hung server (delay) holds every request until the client's timeout, in real time, so
    that one stays short; servers that answer at once get a timeout no loaded machine reaches."""
    return 0.5 if name == "delay" else 10.0


@pytest.fixture
def revocation(emulator) -> Any:
    transport = UrllibTransport()
    made: List[RevocationList] = []

    def make(**kwargs: Any) -> RevocationList:
        kwargs.setdefault("interval", None)
        kwargs.setdefault("timeout", 10.0)
        kwargs.setdefault("retries", 0)
        rl = RevocationList(emulator.url + REVOKED, transport=transport, **kwargs)
        made.append(rl)
        return rl

    yield make
    for rl in made:
        rl.stop()


# ------------------------------------------------------------------ revocation list


@pytest.mark.parametrize("name", sorted(KINDS))
def test_revocation_fault_keeps_the_last_good_list(emulator, revocation, caplog, name):
    caplog.set_level(logging.WARNING, logger="oculus_lite.revocation")
    emulator.revoke("jti-1")
    rl = revocation(timeout=timeout_for(name))
    assert rl.refresh() is True and rl.revoked == {"jti-1"}
    emulator.revoke("jti-2")  # a change the failing fetches cannot deliver
    emulator.set_faults([dict(KINDS[name], path=REVOKED, every=1)])
    for attempt in (1, 2):
        with pytest.raises(OculusError):
            rl.refresh()
        assert rl.revoked == {"jti-1"} and rl.failures == attempt
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(
        "keeping the last list of 1 jti(s)" in w and "stale" in w and "last fetched" in w for w in warnings
    )
    assert "failure #2" in warnings[1]
    emulator.clear_faults()
    assert rl.refresh() is True and rl.revoked == {"jti-1", "jti-2"} and rl.failures == 0


def test_revocation_poller_rides_out_an_outage(emulator, revocation, caplog, clock):
    caplog.set_level(logging.WARNING, logger="oculus_lite.revocation")
    emulator.revoke("jti-1")
    rl = revocation(interval=15.0, clock=clock)
    rl.refresh()
    emulator.set_faults([{"path": REVOKED, "kind": "close", "every": 1}])
    rl.start()
    for failures in (1, 2):  # each wait is at most four intervals (backoff cap)
        clock.advance(60.0)
        clock.wait_idle()
        assert rl.failures == failures and rl.revoked == {"jti-1"} and rl.running
    # The first try went out on the connection kept alive from the healthy fetch; a close there
    # looks like an idle timeout, so it was resent once on a new connection (a GET is safe to).
    assert emulator.stats()["faults_fired"] == 3
    assert sum("stale" in r.getMessage() for r in caplog.records) == 2
    emulator.revoke("jti-2")
    emulator.clear_faults()
    clock.advance(60.0)
    clock.wait_idle()
    assert rl.failures == 0 and rl.revoked == {"jti-1", "jti-2"} and rl.running


def test_client_keeps_serving_tokens_while_the_revocation_list_fails(
    emulator, make_client, token_requests, clock
):
    client = make_client()
    first = client.get_token("db:read")
    emulator.set_faults([{"path": REVOKED, "kind": "status", "status": 503, "every": 1}])
    with pytest.raises(ServerError):
        client.check_revocation()
    assert client.get_token("db:read") == first
    assert token_requests() == 1


# ------------------------------------------------------------------ JWKS


@pytest.fixture
def make_verifier(emulator) -> Any:
    made: List[JwksVerifier] = []

    def make(timeout: float = 10.0) -> JwksVerifier:
        # cache_ttl=0: every verify wants a fresh key set, so every verify meets the fault
        v = JwksVerifier(
            emulator.url,
            check_revocation=False,
            memo=False,
            cache_ttl=0,
            min_cache_ttl=0,
            retries=0,
            timeout=timeout,
        )
        made.append(v)
        return v

    yield make
    for v in made:
        v.close()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_jwks_fault_keeps_the_last_good_key_set(emulator, make_verifier, caplog, name):
    caplog.set_level(logging.WARNING, logger="oculus_lite.jwt")
    verifier = make_verifier(timeout_for(name))
    token = emulator.issue_token()
    assert verifier.verify(token)["sub"] == emulator.demo_client_id
    kids = verifier.key_ids
    before = emulator.stats()["jwks_requests"]
    emulator.set_faults([dict(KINDS[name], path=JWKS, every=1)])
    for _ in range(2):
        assert verifier.verify(token)["sub"] == emulator.demo_client_id  # still verified
    assert verifier.key_ids == kids
    # the first "close" fault lands on a kept connection, and a GET is resent once on a fresh one
    assert emulator.stats()["jwks_requests"] - before == (3 if name == "close" else 2)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert all("keeping the last good key set" in m and "fetched" in m for m in messages)
    with pytest.raises(OculusError):  # an explicit refresh reports the failure...
        verifier.refresh_keys()
    assert verifier.key_ids == kids  # ...and still keeps the keys
    emulator.clear_faults()
    verifier.refresh_keys()


def test_jwks_unreachable_before_any_success_is_an_error_not_a_verdict(emulator, make_verifier):
    from oculus_lite import InvalidTokenError

    verifier = make_verifier()
    emulator.set_faults([{"path": JWKS, "kind": "status", "status": 503, "every": 1}])
    with pytest.raises(OculusError) as info:
        verifier.verify(emulator.issue_token())
    assert not isinstance(info.value, InvalidTokenError)


# ------------------------------------------------------------------ permission polling

POLL = "/api/v1/permissions/*"


@pytest.fixture
def pending(emulator, otp_key) -> Any:
    """A pending permission request that has already been approved by a human."""
    with PermissionClient(api_key=otp_key, base_url=emulator.url) as c:
        permission = c.request_permission("email.send", {"max_emails": 1})
    assert permission.status.value == "pending"
    _decide(emulator.url, permission.id)
    return permission


@pytest.fixture
def otp_key(emulator) -> str:
    emulator.otp.add_agent("ak_reliability_K3Y", "reliability")
    return "ak_reliability_K3Y"


def _decide(url: str, pid: str) -> None:
    import json
    import urllib.request

    req = urllib.request.Request(
        "{}/api/v1/permissions/{}/decide".format(url, pid),
        data=json.dumps({"approved": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("name", ["status-500", "close", "delay"])
def test_polling_survives_transient_faults(emulator, otp_key, pending, clock, name):
    rule = dict(KINDS[name], path=POLL, method="GET", next=2)
    emulator.set_faults([rule])
    with PermissionClient(
        api_key=otp_key, base_url=emulator.url, timeout=timeout_for(name), retries=2, clock=clock
    ) as c:
        result = c.wait_for_permission(pending.id, timeout=10, poll_interval=0.01)
    assert result.status.value == "approved" and result.token
    assert emulator.stats()["faults_fired"] == 2


@pytest.mark.parametrize("retries", [0, 2])
def test_polling_honours_retry_after(emulator, otp_key, pending, clock, retries):
    # retries=2: the HTTP layer waits Retry-After; retries=0: the polling loop does
    emulator.set_faults(
        [{"path": POLL, "method": "GET", "kind": "status", "status": 429, "retry_after": "3", "next": 2}]
    )
    with PermissionClient(api_key=otp_key, base_url=emulator.url, retries=retries, clock=clock) as c:
        started = clock.monotonic()
        result = c.wait_for_permission(pending.id, timeout=10, poll_interval=0.01)
        waited = clock.monotonic() - started
    assert result.status.value == "approved"
    assert emulator.stats()["faults_fired"] == 2
    assert waited == pytest.approx(6.0)  # both Retry-After waits, each exactly as long as asked


def test_polling_survives_an_outage_longer_than_the_retries(emulator, otp_key, pending, clock):
    emulator.set_faults([{"path": POLL, "method": "GET", "kind": "status", "status": 503, "next": 4}])
    with PermissionClient(api_key=otp_key, base_url=emulator.url, retries=1, clock=clock) as c:
        result = c.wait_for_permission(pending.id, timeout=10, poll_interval=0.05)
    assert result.status.value == "approved"
    assert emulator.stats()["faults_fired"] == 4


def test_polling_under_faults_never_leaks_the_api_key(emulator, otp_key, pending, caplog, clock):
    caplog.set_level(logging.DEBUG)
    emulator.set_faults(
        [{"path": POLL, "method": "GET", "kind": "status", "status": 500, "every": 1, "body": otp_key}]
    )
    errors: List[OculusError] = []
    with PermissionClient(api_key=otp_key, base_url=emulator.url, retries=1, clock=clock) as c:
        try:
            c.wait_for_permission(pending.id, timeout=2, poll_interval=0.01)
        except OculusError as exc:
            errors.append(exc)
    assert len(errors) == 1
    texts = [str(errors[0]), repr(errors[0]), repr(errors[0].details)] + [
        r.getMessage() for r in caplog.records
    ]
    assert all(otp_key not in t for t in texts)

"""Revocation list (ETag / 304) and JWKS (Cache-Control, key rotation with a grace period)."""

from oculus_lite.emulator import Emulator


def test_revocation_list_etag_and_304(emulator, wire):
    status, headers, raw = wire.request("GET", "/oauth/revoked-tokens")
    etag = headers["ETag"]
    assert status == 200 and raw == b'{"revoked_jtis":[]}'
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    status, headers, raw = wire.request("GET", "/oauth/revoked-tokens", headers={"If-None-Match": etag})
    assert (status, raw, headers["ETag"]) == (304, b"", etag)
    emulator.revoke("jti-1")
    assert wire.json("POST", "/_emulator/revoke", {"jti": "jti-2"})[0] == 200
    status, headers, raw = wire.request("GET", "/oauth/revoked-tokens", headers={"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag
    assert raw == b'{"revoked_jtis":["jti-1","jti-2"]}'
    stats = emulator.stats()
    assert (stats["revocation_requests"], stats["revocation_not_modified"]) == (3, 1)


def test_revoking_twice_keeps_list_and_etag(emulator, wire):
    emulator.revoke("j")
    _, h1, _ = wire.request("GET", "/oauth/revoked-tokens")
    emulator.revoke("j")
    _, h2, raw = wire.request("GET", "/oauth/revoked-tokens")
    assert h1["ETag"] == h2["ETag"] and raw == b'{"revoked_jtis":["j"]}'
    status, body = wire.json("POST", "/_emulator/revoke", {})
    assert status == 400 and "jti" in body["error"]["message"]


def test_jwks_shape_cache_control_and_count(emulator, wire):
    status, headers, _ = wire.request("GET", "/.well-known/jwks.json")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=300"
    jwks = wire.json("GET", "/.well-known/jwks.json")[1]
    (key,) = jwks["keys"]
    assert {key["kty"], key["alg"], key["use"], key["e"]} == {"RSA", "RS256", "sig", "AQAB"}
    assert key["kid"] and len(key["n"]) >= 342  # 2048-bit modulus
    assert emulator.stats()["jwks_requests"] == 2
    with Emulator(jwks_max_age=7) as emu2:
        assert emu2.jwks()["keys"][0]["kid"] == key["kid"]  # one key per process, shared
    # (its own port, same key)


def test_jwks_max_age_is_configurable(connect):
    with Emulator(config={"jwks_max_age": 7}) as emu:
        _, headers, _ = connect(emu.url).request("GET", "/.well-known/jwks.json")
    assert headers["Cache-Control"] == "public, max-age=7"


def test_key_rotation_keeps_old_key_for_grace_then_drops_it(emulator, wire, verify_token):
    old_token = wire.token(emulator.demo_client_id, emulator.demo_client_secret)[1]["access_token"]
    old_kid = emulator.jwks()["keys"][0]["kid"]
    status, body = wire.json("POST", "/_emulator/keys/rotate", {"grace": 600})
    assert status == 200 and body["kid"] != old_kid
    jwks = wire.json("GET", "/.well-known/jwks.json")[1]
    assert [k["kid"] for k in jwks["keys"]] == [body["kid"], old_kid]
    verify_token(old_token, jwks)  # still verifies during the grace period
    new_token = wire.token(emulator.demo_client_id, emulator.demo_client_secret)[1]["access_token"]
    assert verify_token(new_token, jwks)[0]["kid"] == body["kid"]
    # the grace period ends (forced here; normally after `grace` seconds): the old key leaves the JWKS
    assert wire.json("POST", "/_emulator/keys/expire") == (200, {"dropped": 1})
    assert [k["kid"] for k in wire.json("GET", "/.well-known/jwks.json")[1]["keys"]] == [body["kid"]]
    emulator.reset()  # back to the shared process key
    assert [k["kid"] for k in emulator.jwks()["keys"]] == [old_kid]


def test_retired_key_leaves_jwks_when_grace_runs_out_on_the_clock():
    from oculus_lite._engine import ManualClock
    from oculus_lite.emulator._keys import KeyRing

    clock = ManualClock()
    ring = KeyRing(clock)
    old_kid = ring.current()[1]
    public = ring.current()[0].public_key()
    with ring._lock:  # white-box: retire a key without paying for a new one
        ring._retired.append((public, "retired-kid", clock.monotonic() + 5))
    assert [k["kid"] for k in ring.jwks()["keys"]] == [old_kid, "retired-kid"]
    assert ring.public_key("retired-kid") == public
    clock.advance(4.9)
    assert [k["kid"] for k in ring.jwks()["keys"]] == [old_kid, "retired-kid"]
    clock.advance(0.2)
    assert [k["kid"] for k in ring.jwks()["keys"]] == [old_kid]
    assert ring.public_key("retired-kid") is None

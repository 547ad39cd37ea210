"""Key handling: rotation, refetch rate limit under an unknown-kid storm, Cache-Control,
keeping the last good set, and JWKs that are refused (with the reason)."""

import logging
import threading
from typing import Any, Callable, List

import pytest

from oculus_lite.emulator import Emulator
from oculus_lite.exceptions import (
    InvalidSignatureError,
    KeyNotFoundError,
    ServerError,
    UnsupportedAlgorithmError,
)
from oculus_lite.jwt import JwksVerifier, decode

from .jwks_server import FakeClock, JwksServer, b64json, claims, jwk, rsa_key, sign

Make = Callable[..., JwksVerifier]


def _jwks_requests(emulator: Emulator) -> int:
    return int(emulator.stats()["jwks_requests"])


def test_rotation_grace_then_removal(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url, check_revocation=False)
    old = emulator.issue_token()
    assert verifier.verify(old)
    assert _jwks_requests(emulator) == 1
    new_kid = emulator.rotate_keys(grace=600)
    new = emulator.issue_token()
    assert decode(new).header["kid"] == new_kid
    assert verifier.verify(new).jti == decode(new).claims["jti"]  # after exactly one refetch
    assert _jwks_requests(emulator) == 2
    assert verifier.verify(old) and verifier.verify(emulator.issue_token())  # grace: both verify
    assert _jwks_requests(emulator) == 2
    assert set(verifier.key_ids) == {decode(old).header["kid"], new_kid}
    emulator.expire_retired_keys()
    verifier.refresh_keys()
    with pytest.raises(KeyNotFoundError):
        verifier.verify(old)  # memoised before, but the key set changed: verified again, refused
    assert verifier.verify(new)


def test_unknown_kid_storm_costs_one_fetch_per_cooldown(emulator: Emulator, make_verifier: Make) -> None:
    mono = FakeClock(1000.0)
    verifier = make_verifier(emulator.url, check_revocation=False, monotonic=mono, refetch_cooldown=60)
    genuine = emulator.issue_token()
    assert verifier.verify(genuine)
    # What an attacker sends: a real token under made-up kids (no key to sign with needed).
    _, payload, signature = genuine.split(".")
    forged = [
        b64json(dict(decode(genuine).header, kid="forged-{}".format(i))) + "." + payload + "." + signature
        for i in range(64)
    ]
    barrier = threading.Barrier(64)
    errors: List[BaseException] = []

    def attack(token: str) -> None:
        barrier.wait()
        try:
            verifier.verify(token)
        except BaseException as exc:  # noqa: BLE001 - collected and checked below
            errors.append(exc)

    threads = [threading.Thread(target=attack, args=(t,)) for t in forged]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 64 and all(isinstance(e, KeyNotFoundError) for e in errors)
    assert _jwks_requests(emulator) == 2  # the initial fetch and one refetch
    for token in forged[:8]:  # still inside the cooldown: no fetch at all
        with pytest.raises(KeyNotFoundError):
            verifier.verify(token)
    assert _jwks_requests(emulator) == 2
    mono.advance(61)
    for token in forged[:8]:
        with pytest.raises(KeyNotFoundError):
            verifier.verify(token)
    assert _jwks_requests(emulator) == 3


def test_cache_control_max_age_is_honoured(make_verifier: Make) -> None:
    key = rsa_key(2048, 0)
    mono = FakeClock(0.0)
    with JwksServer([jwk(key, "k1")], cache_control="public, max-age=100") as server:
        verifier = make_verifier(jwks_url=server.url, check_revocation=False, monotonic=mono, memo=False)
        token = sign(key, claims())
        verifier.verify(token)
        mono.advance(99)
        verifier.verify(token)
        assert server.requests == 1
        mono.advance(2)
        verifier.verify(token)
        assert server.requests == 2
        server.cache_control = "max-age=999999999"
        mono.advance(101)
        verifier.verify(token)
        mono.advance(24 * 3600 - 1)  # capped by cache_ttl (24 h)
        verifier.verify(token)
        assert server.requests == 3
        mono.advance(2)
        verifier.verify(token)
        assert server.requests == 4


def test_failed_refetch_keeps_the_last_good_set(
    make_verifier: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="oculus_lite")
    key = rsa_key(2048, 0)
    mono = FakeClock(0.0)
    with JwksServer([jwk(key, "k1")], cache_control="max-age=10") as server:
        verifier = make_verifier(
            jwks_url=server.url,
            check_revocation=False,
            monotonic=mono,
            memo=False,
            retries=0,
            refetch_cooldown=60,
        )
        token = sign(key, claims())
        verifier.verify(token)
        server.fail_next = 100
        mono.advance(11)  # the set is stale: the refetch fails, the old set still decides
        assert verifier.verify(token)
        assert "keeping the last good key set" in caplog.text
        with pytest.raises(KeyNotFoundError):
            verifier.verify(sign(key, claims(), kid="k2"))
        assert server.requests == 3  # initial, stale refresh, one unknown-kid refetch
        for _ in range(5):
            assert verifier.verify(token)  # no retry storm while the endpoint is down
        assert server.requests == 3
        with pytest.raises(ServerError):
            verifier.refresh_keys()  # an explicit refresh reports the failure
        assert verifier.key_ids == ("k1",) and verifier.verify(token)


def test_initial_fetch_failure_raises_the_service_error(make_verifier: Make) -> None:
    key = rsa_key(2048, 0)
    with JwksServer([jwk(key, "k1")]) as server:
        server.fail_next = 1
        verifier = make_verifier(jwks_url=server.url, check_revocation=False, retries=0)
        with pytest.raises(ServerError):
            verifier.verify(sign(key, claims()))
        assert verifier.verify(sign(key, claims()))  # next call fetches again


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512"])
def test_rs_algorithms(make_verifier: Make, alg: str) -> None:
    # 4096-bit keys are covered by the interop tests (cryptography generates them quickly)
    one, two = rsa_key(2048, 0), rsa_key(2048, 1)
    with JwksServer([jwk(one, "a", alg=None), jwk(two, "b", alg=alg)]) as server:
        verifier = make_verifier(jwks_url=server.url, check_revocation=False)
        assert verifier.verify(sign(one, claims(), alg=alg, kid="a"))
        assert verifier.verify(sign(two, claims(), alg=alg, kid="b"))
        with pytest.raises(InvalidSignatureError, match="does not verify with key 'b'"):
            verifier.verify(sign(one, claims(), alg=alg, kid="b"))


def test_refused_keys_say_why(make_verifier: Make) -> None:
    key, weak = rsa_key(2048, 0), rsa_key(1024, 0)
    good = jwk(key, "good")
    keys = [
        good,
        jwk(weak, "weak"),
        jwk(key, "enc", use="enc"),
        jwk(key, "ops", key_ops=["encrypt"]),
        jwk(key, "ec", kty="EC"),
        jwk(key, "hs", alg="HS256"),
        dict(good, kid="padded", n=good["n"] + "=="),
        dict(good, kid="nonb64", n="***"),
        dict(good, kid="even-e", e="Ag"),
        "not-an-object",
    ]
    expect = {
        "weak": (KeyNotFoundError, "modulus is 1024 bits; at least 2048"),
        "enc": (KeyNotFoundError, "use is 'enc'"),
        "ops": (KeyNotFoundError, "key_ops"),
        "ec": (UnsupportedAlgorithmError, "'EC' key"),
        "hs": (UnsupportedAlgorithmError, "for alg 'HS256'"),
        "padded": (KeyNotFoundError, "base64url"),
        "nonb64": (KeyNotFoundError, "base64url"),
        "even-e": (KeyNotFoundError, "not a valid RSA value"),
    }
    with JwksServer(keys) as server:  # type: ignore[arg-type]
        verifier = make_verifier(jwks_url=server.url, check_revocation=False)
        assert verifier.verify(sign(key, claims(), kid="good"))
        assert verifier.key_ids == ("good",)
        for kid, (error, reason) in expect.items():
            signer = weak if kid == "weak" else key
            with pytest.raises(error) as info:
                verifier.verify(sign(signer, claims(), kid=kid))
            assert reason in info.value.reason and kid in info.value.reason
        assert server.requests == 1  # a known (if refused) kid never triggers a refetch


def test_kidless_tokens(make_verifier: Make) -> None:
    key, other = rsa_key(2048, 0), rsa_key(2048, 1)
    with JwksServer([jwk(key, None)]) as server:
        verifier = make_verifier(jwks_url=server.url, check_revocation=False)
        assert verifier.verify(sign(key, claims(), kid=None))
        server.keys.append(jwk(other, None))
        verifier.refresh_keys()
        with pytest.raises(KeyNotFoundError, match="2 usable RS256"):
            verifier.verify(sign(key, claims(), kid=None))


def test_memo_is_bounded(make_verifier: Make) -> None:
    key = rsa_key(2048, 0)
    with JwksServer([jwk(key, "k1")]) as server:
        verifier = make_verifier(jwks_url=server.url, check_revocation=False, memo_size=4)
        tokens = [sign(key, claims()) for _ in range(15)]  # over the bound three times
        for token in tokens:
            verifier.verify(token)
        memo: Any = verifier._memo
        assert 0 < len(memo) <= 4
        assert tokens[-1] in memo


def test_cold_start_thread_storm_fetches_keys_and_list_once(emulator: Emulator, make_verifier: Make) -> None:
    verifier = make_verifier(emulator.url, memo=False)
    tokens = [emulator.issue_token() for _ in range(4)]
    barrier = threading.Barrier(32)
    results: List[Any] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcome: Any = verifier.verify(tokens[i % 4]).jti
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(decode(tokens[i % 4]).claims["jti"] for i in range(32))
    stats = emulator.stats()
    assert stats["jwks_requests"] == 1 and stats["revocation_requests"] == 1

"""Concurrency: exact counters and one-time refresh tokens under simultaneous use."""

import http.client
import json
import threading
from urllib.parse import urlencode

N = 16


def _post_form(port, form):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/oauth/token",
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _together(fn):
    barrier = threading.Barrier(N)
    results = [None] * N

    def run(i):
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_rotating_refresh_token_used_at_once_by_many_works_once(emulator):
    emulator.add_agent("r", "pw", scopes=["db:*"], refresh_tokens=True)
    _, first = _post_form(
        emulator.port,
        {"grant_type": "client_credentials", "client_id": "r", "client_secret": "pw", "scope": "db:read"},
    )
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    results = _together(lambda: _post_form(emulator.port, form))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * (N - 1)
    assert {body["error"]["code"] for status, body in results if status == 400} == {"invalid_grant"}
    assert emulator.stats()["token_requests_by_grant"] == {"client_credentials": 1, "refresh_token": N}


def test_counters_are_exact_under_concurrency(emulator):
    def work():
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=30)
        try:
            for _ in range(5):
                conn.request("GET", "/oauth/revoked-tokens")
                conn.getresponse().read()
        finally:
            conn.close()

    _together(work)
    stats = emulator.stats()
    assert (stats["requests"], stats["revocation_requests"]) == (5 * N, 5 * N)

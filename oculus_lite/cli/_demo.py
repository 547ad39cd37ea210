"""``python -m oculus_lite demo``: the main job, end to end, against an embedded emulator.

Every figure it prints is read from the emulator's counters or measured in
this run; nothing is canned. Tokens are never printed, only their claims.
"""

import threading
import time
from typing import Any, TextIO

__all__ = ["run_demo"]


def run_demo(out: TextIO) -> int:
    from ..emulator import Emulator
    from ..exceptions import OculusAuthError
    from ..tokens._client import Client

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    def step(n: int, title: str) -> None:
        say()
        say("{}. {}".format(n, title))

    with Emulator() as emu:
        say("oculus_lite demo: an embedded emulator is listening on {}".format(emu.url))
        emu.add_agent("demo-agent", "demo-secret-not-for-production", scopes=["db:*", "crm:*"], token_ttl=3)

        def count() -> int:
            return int(emu.stats()["token_requests"])

        with Client("demo-agent", "demo-secret-not-for-production", emu.url) as client:
            step(1, "A scoped, short-lived token (client credentials)")
            info = client.get_token_info("db:read")
            claims = info.claims
            say(
                "   scope={!r} sub={!r} jti={!r}, expires in {:.0f} s".format(
                    claims.get("scope"), claims.get("sub"), claims.get("jti"), info.seconds_left()
                )
            )
            say("   {!r}".format(info))
            say("   token requests so far: {}".format(count()))

            step(2, "A cache hit: the call an agent makes before every tool call")
            n = 20000
            started = time.perf_counter()
            for _ in range(n):
                client.get_token("db:read")
            per_call = (time.perf_counter() - started) / n * 1e9
            say("   {} calls, {:.0f} ns each; token requests still: {}".format(n, per_call, count()))

            step(3, "32 threads miss the same new scope at once: single flight")
            before = count()
            barrier = threading.Barrier(32)
            results = []

            def worker() -> None:
                barrier.wait()
                results.append(client.get_token("crm:contacts:read db:read"))

            threads = [threading.Thread(target=worker) for _ in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            say(
                "   32 callers, {} distinct token(s), {} token request(s) sent".format(
                    len(set(results)), count() - before
                )
            )

            step(4, "Refresh: this agent's tokens live 3 s; the client renews them ahead of expiry")
            first = client.get_token_info("db:read").jti
            deadline = time.monotonic() + 10
            renewed = first
            while renewed == first and time.monotonic() < deadline:
                time.sleep(0.2)
                renewed = client.get_token_info("db:read").jti
            say(
                "   jti before {!r}, after {!r}; callers never waited for an expired token".format(
                    first, renewed
                )
            )

            step(5, "Someone rotates the agent's secret: the old secret fails at once (401)")
            emu.rotate_secret("demo-agent")
            try:
                client.get_token("db:write")
            except OculusAuthError as exc:
                say("   {}: {}".format(type(exc).__name__, exc))

        step(6, "A scope no active policy grants (403)")
        with Client(emu.demo_client_id, emu.demo_client_secret, emu.url) as client:
            try:
                client.get_token("admin:users:delete")
            except OculusAuthError as exc:
                say("   {}: {}".format(type(exc).__name__, exc))

        step(7, "One-time permission with human approval (Agent OTP)")
        _permission_steps(emu, out)
    say()
    say("Done. Run the tests with the command in the README; try `python -m oculus_lite serve`.")
    return 0


def _permission_steps(emu: Any, out: TextIO) -> None:
    from ._permission import demo_permission_steps

    demo_permission_steps(emu, out)

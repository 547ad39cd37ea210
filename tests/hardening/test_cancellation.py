"""A coroutine waiting on a fetch led by a task on another event loop must not fail when that
loop shuts down (cancelling the leader): it leads a new fetch itself."""

import asyncio
import threading
from typing import List

from oculus_lite import Client


def test_a_waiter_on_another_loop_survives_the_leaders_loop_shutting_down(emulator, agent):
    emulator.set_faults([{"path": "/oauth/token", "kind": "delay", "delay_ms": 3000, "next": 1}])
    client = Client(agent.client_id, agent.client_secret, emulator.url, revocation_interval=None, timeout=10)
    in_flight = threading.Event()
    waiter_joined = threading.Event()
    results: List[str] = []
    errors: List[BaseException] = []

    async def leader() -> None:
        asyncio.ensure_future(client.aget_token("db:read"))
        while emulator.stats()["token_requests"] < 1:
            await asyncio.sleep(0.01)
        in_flight.set()
        await asyncio.get_running_loop().run_in_executor(None, waiter_joined.wait, 10)
        # Returning now makes asyncio.run cancel the pending tasks: the leader's fetch among them.

    def waiter() -> None:
        async def main() -> None:
            results.append(await client.aget_token("db:read"))

        try:
            asyncio.run(main())
        except BaseException as exc:  # recorded, asserted below
            errors.append(exc)

    a = threading.Thread(target=lambda: asyncio.run(leader()))
    a.start()
    assert in_flight.wait(10)
    b = threading.Thread(target=waiter)
    b.start()
    flight = client._flights.current("db:read")
    for _ in range(500):  # until the waiter's coroutine is parked on the leader's flight
        if flight is not None and flight._waiters:
            break
        threading.Event().wait(0.01)
    waiter_joined.set()
    a.join(20)
    b.join(30)
    client.stop()
    assert errors == [] and len(results) == 1 and results[0]
    assert emulator.stats()["token_requests"] == 2  # the abandoned fetch, then the waiter's own

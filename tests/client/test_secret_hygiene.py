"""A canary secret and the tokens themselves never reach logs, reprs or error text."""

import asyncio
import logging

from oculus_lite import Client, OculusError


def test_canary_never_leaks(emulator, agent, canary, caplog):
    caplog.set_level(logging.DEBUG)
    emulator.add_agent("rt", canary + "-rt", scopes=["db:*"], token_ttl=2, refresh_tokens=True)
    seen_objects = []
    errors = []
    client = Client(agent.client_id, canary, emulator.url, revocation_interval=0.1)
    rt_client = Client("rt", canary + "-rt", emulator.url, revocation_interval=None)
    try:
        info = client.get_token_info("db:read")
        tokens = {info.access_token}
        seen_objects += [client, info, rt_client]
        rt_info = rt_client.get_token_info("db:read")
        tokens |= {rt_info.access_token, rt_info.refresh_token or ""}
        seen_objects.append(rt_info)
        tokens.add(asyncio.run(client.aget_token("crm:read")))
        for scope in ("stripe:customer:read", "db:x\n"):  # a 403 and a validation error
            try:
                client.get_token(scope)
            except OculusError as exc:
                errors.append(exc)
        emulator.set_faults(
            [{"path": "/oauth/token", "kind": "status", "status": 500, "every": 1, "body": canary}]
        )
        try:
            Client(agent.client_id, canary, emulator.url, retries=0).get_token("db:other")
        except OculusError as exc:
            errors.append(exc)
        emulator.clear_faults()
        emulator.rotate_secret(agent.client_id)
        try:
            client.get_token("db:write")
        except OculusError as exc:
            errors.append(exc)
        emulator.revoke(info.jti)
        client.check_revocation()
        try:
            client.get_token("db:read")
        except OculusError as exc:
            errors.append(exc)
    finally:
        client.stop()
        rt_client.stop()
    assert [type(e).__name__ for e in errors] == [
        "ForbiddenError",
        "ValidationError",
        "ServerError",
        "AuthenticationError",
        "TokenRevokedException",
    ]
    texts = [r.getMessage() for r in caplog.records] + [repr(o) for o in seen_objects]
    texts += [str(o) for o in seen_objects] + [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [repr(e.details) for e in errors]
    assert len(caplog.records) > 0
    secrets = {canary} | {t for t in tokens if t}
    for text in texts:
        for secret in secrets:
            assert secret not in text, text

"""The audit emitter (the official SDK's ``oculus_sdk.audit``).

    emitter = AuditEmitter(base_url, sdk_service_token, agent_id)
    emitter.start()
    emitter.emit(emitter.build_tool_event("stripe.customers.read", "allow", "allowed", "get_customer"))
    emitter.stop()

Events are copied when emitted, redacted deeply before they are sent, queued in a buffer
bounded by count and bytes (new events are refused and counted when it is full), and sent in
batches of up to 100 as fast as the server accepts them, retried on 5xx, 429, network errors
and expired service tokens. ``stop()`` and interpreter exit send what is left within a
deadline; ``stats()`` accounts for every event.
"""

from .governance._audit import AuditEmitter, AuditStats

__all__ = ["AuditEmitter", "AuditStats"]

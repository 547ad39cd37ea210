"""Task context (the official SDK's ``oculus_sdk.context``): ``client.task(task_id)``.

    with client.task("refund-batch-001") as ctx:
        if ctx.can("stripe.charges.create"):
            ...
        with ctx.capability("stripe.customers.read") as creds:
            stripe.api_key = creds["api_key"]

The task is scoped with ``contextvars``: enforced tools called inside the block and asyncio
tasks created inside it see it; a thread sees it when its target is wrapped with
``ctx.bind(target)`` (or run through ``contextvars.copy_context().run``).
``current_task_id()`` reads it.
"""

from .governance._context import CapabilityBlock, TaskContext
from .governance._current import current_task_id

__all__ = ["CapabilityBlock", "TaskContext", "current_task_id"]

"""The task and intent of the code running now, in ``contextvars`` (so each thread, asyncio task
and ``contextvars.Context`` sees its own).

asyncio tasks copy the context when they are created, so a task started inside
``client.task(...)`` sees that task. A ``threading.Thread`` does not copy it (before
Python 3.14): start the thread with ``TaskContext.bind(target)``, or run its target through
``contextvars.copy_context().run``. ``loop.run_in_executor`` does not copy it either
(``asyncio.to_thread`` does, on 3.9+).
"""

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional, Tuple

__all__ = ["current_intent", "current_task_id", "intent", "task_var"]

task_var: "ContextVar[Optional[str]]" = ContextVar("oculus_lite_task_id", default=None)
_intent: "ContextVar[Optional[Tuple[Optional[str], Optional[str]]]]" = ContextVar(
    "oculus_lite_intent", default=None
)

#: The task id of the innermost ``client.task(...)`` block, or None.
current_task_id = task_var.get
#: (agent_reasoning, llm_model) a framework adapter set for the tool call being made, or None.
current_intent = _intent.get


@contextmanager
def intent(agent_reasoning: Optional[str] = None, llm_model: Optional[str] = None) -> Iterator[None]:
    """Attach the model's reasoning and name to the audit events of tool calls made inside
    (framework adapters use this; the reasoning is redacted before it is sent)."""
    token = _intent.set((agent_reasoning, llm_model))
    try:
        yield
    finally:
        _intent.reset(token)

"""The capability evaluator (the official SDK's ``oculus_sdk.evaluator``), failing closed.

    from oculus_lite.evaluator import capability_evaluator

    allowed, reason = capability_evaluator.evaluate(
        "stripe.charges.create", {"stripe.charges.create"}, {"max_amount_cents": 5000}, {"amount_cents": 1200}
    )

Same names, signatures and reason strings as the official module; unlike it, every malformed
or unknown constraint denies with its own reason, ``deny_always`` can be passed, time windows
may cross midnight, the clock is injectable (``CapabilityEvaluator(now=...)``) and a scope
string is split on whitespace instead of searched.
"""

from .governance._evaluator import (
    REASON_ALLOWED,
    REASON_AMOUNT_EXCEEDED,
    REASON_DENY_ALWAYS,
    REASON_INVALID_AMOUNT,
    REASON_INVALID_CONTEXT,
    REASON_INVALID_RESULT_COUNT,
    REASON_MALFORMED_CONSTRAINT,
    REASON_MAX_RESULTS_EXCEEDED,
    REASON_NOT_IN_SCOPE,
    REASON_TASK_CONTEXT_REQUIRED,
    REASON_TIME_WINDOW,
    REASON_TIMEZONE_UNAVAILABLE,
    REASON_UNKNOWN_CONSTRAINT,
    REASON_UNKNOWN_TIMEZONE,
    REASONS,
    CapabilityEvaluator,
    EvalResult,
    capability_evaluator,
)

__all__ = [
    "REASONS",
    "REASON_ALLOWED",
    "REASON_AMOUNT_EXCEEDED",
    "REASON_DENY_ALWAYS",
    "REASON_INVALID_AMOUNT",
    "REASON_INVALID_CONTEXT",
    "REASON_INVALID_RESULT_COUNT",
    "REASON_MALFORMED_CONSTRAINT",
    "REASON_MAX_RESULTS_EXCEEDED",
    "REASON_NOT_IN_SCOPE",
    "REASON_TASK_CONTEXT_REQUIRED",
    "REASON_TIMEZONE_UNAVAILABLE",
    "REASON_TIME_WINDOW",
    "REASON_UNKNOWN_CONSTRAINT",
    "REASON_UNKNOWN_TIMEZONE",
    "CapabilityEvaluator",
    "EvalResult",
    "capability_evaluator",
]

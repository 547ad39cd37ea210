"""The capability evaluator fails closed: every rule of the issue, and the official evaluator's
flaws (S5, C2, C15 "no clock injection", the substring scope match) each with a test."""

import math
import sys
from typing import Dict

import pytest

from oculus_lite import evaluator as ev
from oculus_lite.evaluator import CapabilityEvaluator, EvalResult, capability_evaluator

from .conftest import NOON_WEDNESDAY

CAP = "stripe.charges.create"
SCOPES = {CAP, "stripe.customers.read"}
HOUR = 3600.0


def at(epoch: float) -> CapabilityEvaluator:
    return CapabilityEvaluator(now=lambda: epoch)


NOON = at(NOON_WEDNESDAY)


def reason(constraints, context=None, evaluator=NOON, **kwargs):
    result = evaluator.evaluate(CAP, SCOPES, constraints, context, **kwargs)
    assert isinstance(result, EvalResult)
    allowed, why = result  # unpacks like the official NamedTuple
    assert allowed == (why == ev.REASON_ALLOWED)
    return why


def test_official_names_and_values():
    assert (ev.REASON_ALLOWED, ev.REASON_NOT_IN_SCOPE, ev.REASON_TIME_WINDOW) == (
        "allowed",
        "capability_not_in_scope",
        "time_window_violation",
    )
    assert (ev.REASON_AMOUNT_EXCEEDED, ev.REASON_TASK_CONTEXT_REQUIRED, ev.REASON_MAX_RESULTS_EXCEEDED) == (
        "amount_limit_exceeded",
        "task_context_required",
        "max_results_exceeded",
    )
    assert isinstance(capability_evaluator, CapabilityEvaluator)
    assert EvalResult(True, "allowed") == (True, "allowed")
    assert len(ev.REASONS) == 14


def test_scope_is_exact_membership_and_strings_are_split_not_searched():
    """Official flaw S5 (section 4): a scope *string* made the check a substring match ("a.b" in "xa.b")."""
    assert NOON.evaluate("a.b", "xa.b", {}) == (False, ev.REASON_NOT_IN_SCOPE)
    assert NOON.evaluate("a.b", "x a.b\ty", {}) == (True, ev.REASON_ALLOWED)
    assert NOON.evaluate("a.b", ["a.b"], {}) == (True, ev.REASON_ALLOWED)
    assert NOON.evaluate("a.b", {"a.*"}, {}) == (False, ev.REASON_NOT_IN_SCOPE)  # no wildcards, as official
    assert NOON.evaluate("a.b", None, {}).allowed is False  # type: ignore[arg-type]
    assert NOON.evaluate(["a.b"], {"a.b"}, {}).allowed is False  # type: ignore[arg-type]


def test_deny_always_comes_after_scope_and_before_constraints():
    """Official flaw S4: the capability map's deny_always lists were never consulted."""
    assert reason({}, deny_always={CAP}) == ev.REASON_DENY_ALWAYS
    assert reason({"bogus": 1}, deny_always=[CAP]) == ev.REASON_DENY_ALWAYS
    assert NOON.evaluate("other", SCOPES, {}, deny_always={"other"}).reason == ev.REASON_NOT_IN_SCOPE
    assert reason({}, deny_always={"stripe.payouts.create"}) == ev.REASON_ALLOWED


@pytest.mark.parametrize("constraints", [None, [], "x", 5])
def test_constraints_null_or_not_an_object_denies(constraints):
    """Official flaw S5 (section 4): constraints=None (JSON null) raised TypeError out of the tool call."""
    assert reason(constraints) == ev.REASON_MALFORMED_CONSTRAINT


def test_unknown_constraint_keys_deny():
    """Official flaw S4: unknown constraints (allowed_ips, max_calls_per_hour) were ignored."""
    assert reason({"allowed_ips": ["10.0.0.0/8"]}) == ev.REASON_UNKNOWN_CONSTRAINT
    assert reason({"time_bounds": {"hours": "00:00-24:00", "dates": []}}) == ev.REASON_UNKNOWN_CONSTRAINT
    result, detail = NOON.explain(CAP, SCOPES, {"max_calls_per_hour": 5})
    assert result.reason == ev.REASON_UNKNOWN_CONSTRAINT and "max_calls_per_hour" in detail


@pytest.mark.parametrize(
    "amount",
    ["1e9", "5000", float("nan"), float("inf"), -float("inf"), True, False, 5000.9, 10.0, [1], {"a": 1}],
)
def test_amounts_that_are_not_integers_deny(amount):
    """Official flaw S5: "1e9", NaN, 5000.9 (truncated), booleans and strings passed."""
    assert reason({"max_amount_cents": 5000}, {"amount_cents": amount}) == ev.REASON_INVALID_AMOUNT


def test_amount_rules():
    cap = {"max_amount_cents": 5000}
    assert reason(cap, {"amount_cents": 5000}) == ev.REASON_ALLOWED
    assert reason(cap, {"amount_cents": 5001}) == ev.REASON_AMOUNT_EXCEEDED
    assert reason(cap, {"amount_cents": 10**40}) == ev.REASON_AMOUNT_EXCEEDED
    assert reason(cap, {"amount_cents": -1}) == ev.REASON_INVALID_AMOUNT  # negative denies
    assert reason(cap, {}) == ev.REASON_ALLOWED  # a cap with no amount allows (read tools)
    assert reason(cap, {"amount_cents": None}) == ev.REASON_ALLOWED
    assert reason(cap, None) == ev.REASON_ALLOWED


@pytest.mark.parametrize("cap", ["5000", 5000.0, float("nan"), True, -1, None, [5000]])
def test_caps_that_are_not_integers_deny(cap):
    """Official flaw S5: a string cap "5000" was a swallowed TypeError, so everything passed."""
    assert reason({"max_amount_cents": cap}, {"amount_cents": 1}) == ev.REASON_MALFORMED_CONSTRAINT
    assert reason({"max_amount_cents": cap}) == ev.REASON_MALFORMED_CONSTRAINT  # even without an amount
    assert reason({"max_results": cap}) == ev.REASON_MALFORMED_CONSTRAINT


def test_max_results_rules():
    cap = {"max_results": 10}
    assert reason(cap, {"result_count": 10}) == ev.REASON_ALLOWED
    assert reason(cap, {"result_count": 11}) == ev.REASON_MAX_RESULTS_EXCEEDED
    assert reason(cap, {"result_count": "3"}) == ev.REASON_INVALID_RESULT_COUNT
    assert reason(cap, {"result_count": -3}) == ev.REASON_INVALID_RESULT_COUNT
    assert reason(cap, {"result_count": 2.0}) == ev.REASON_INVALID_RESULT_COUNT
    assert reason(cap, {}) == ev.REASON_ALLOWED


def test_task_context_required():
    """Official: the string "false" counted as required; here anything but a boolean is malformed."""
    assert reason({"task_context_required": True}) == ev.REASON_TASK_CONTEXT_REQUIRED
    assert reason({"task_context_required": True}, {"task_id": ""}) == ev.REASON_TASK_CONTEXT_REQUIRED
    assert reason({"task_context_required": True}, {"task_id": 5}) == ev.REASON_TASK_CONTEXT_REQUIRED
    assert reason({"task_context_required": True}, {"task_id": "t-1"}) == ev.REASON_ALLOWED
    assert reason({"task_context_required": False}) == ev.REASON_ALLOWED
    assert reason({"task_context_required": "false"}) == ev.REASON_MALFORMED_CONSTRAINT
    assert reason({"task_context_required": 1}) == ev.REASON_MALFORMED_CONSTRAINT


def test_order_first_failure_wins():
    constraints = {
        "time_bounds": {"hours": "01:00-02:00"},
        "max_amount_cents": 1,
        "task_context_required": True,
        "max_results": 1,
    }
    context: Dict[str, object] = {"amount_cents": 5, "result_count": 5}
    assert reason(constraints, context) == ev.REASON_TIME_WINDOW
    del constraints["time_bounds"]
    assert reason(constraints, context) == ev.REASON_AMOUNT_EXCEEDED
    context["amount_cents"] = 1
    assert reason(constraints, context) == ev.REASON_TASK_CONTEXT_REQUIRED
    context["task_id"] = "t"
    assert reason(constraints, context) == ev.REASON_MAX_RESULTS_EXCEEDED
    context["result_count"] = 1
    assert reason(constraints, context) == ev.REASON_ALLOWED
    assert NOON.evaluate("nope", SCOPES, {"junk": 1}, deny_always={"nope"}).reason == ev.REASON_NOT_IN_SCOPE


def test_time_window_uses_the_injected_clock():
    """Official flaw C15: no clock injection, so time bounds could not be tested."""
    bounds = {"time_bounds": {"hours": "09:00-17:00", "days": ["mon", "Wednesday"]}}
    assert reason(bounds, evaluator=at(NOON_WEDNESDAY)) == ev.REASON_ALLOWED
    assert reason(bounds, evaluator=at(NOON_WEDNESDAY - 4 * HOUR)) == ev.REASON_TIME_WINDOW  # 08:00
    assert (
        reason(bounds, evaluator=at(NOON_WEDNESDAY + 5 * HOUR)) == ev.REASON_TIME_WINDOW
    )  # 17:00, end excluded
    assert reason(bounds, evaluator=at(NOON_WEDNESDAY + 5 * HOUR - 60)) == ev.REASON_ALLOWED  # 16:59
    assert reason(bounds, evaluator=at(NOON_WEDNESDAY + 24 * HOUR)) == ev.REASON_TIME_WINDOW  # Thursday
    assert reason(bounds, evaluator=at(NOON_WEDNESDAY - 48 * HOUR)) == ev.REASON_ALLOWED  # Monday
    assert reason({"time_bounds": {"hours": "00:00-24:00"}}) == ev.REASON_ALLOWED
    assert reason({"time_bounds": {}}) == ev.REASON_ALLOWED
    assert reason({"time_bounds": {"days": []}}) == ev.REASON_ALLOWED  # [] means every day (control plane)


def test_overnight_windows_work():
    """Official flaw C2: an overnight window ("22:00-06:00") was always denied."""
    night = {"time_bounds": {"hours": "22:00-06:00"}}
    for hour, expected in (
        (23, True),
        (22, True),
        (2, True),
        (5.99, True),
        (6, False),
        (12, False),
        (21.99, False),
    ):
        when = NOON_WEDNESDAY - 12 * HOUR + hour * HOUR
        assert (reason(night, evaluator=at(when)) == ev.REASON_ALLOWED) is expected, hour


@pytest.mark.parametrize(
    "hours",
    ["9-17", "09:00:00-17:00:00", "garbage", "25:00-26:00", "09:60-10:00", "12:00-12:00", 900, "24:00-01:00"],
)
def test_malformed_hours_deny(hours):
    """Official flaw S5: "HH:MM:SS", "9-17" and garbage failed open."""
    assert reason({"time_bounds": {"hours": hours}}) == ev.REASON_MALFORMED_CONSTRAINT


@pytest.mark.parametrize("days", ["mon", ["Funday"], ["mon", 3], "weekdays", {"mon": True}])
def test_unknown_days_and_days_as_a_string_deny(days):
    """Official: a string was iterated per character, unknown names silently dropped."""
    assert reason({"time_bounds": {"days": days}}) == ev.REASON_MALFORMED_CONSTRAINT


def test_time_bounds_not_an_object_denies():
    assert reason({"time_bounds": "09:00-17:00"}) == ev.REASON_MALFORMED_CONSTRAINT


def test_missing_timezone_means_utc():
    bounds = {"time_bounds": {"hours": "11:00-13:00"}}
    assert reason(bounds) == ev.REASON_ALLOWED
    assert reason({"time_bounds": {"hours": "11:00-13:00", "timezone": None}}) == ev.REASON_ALLOWED
    assert reason({"time_bounds": {"hours": "11:00-13:00", "timezone": "UTC"}}) == ev.REASON_ALLOWED


@pytest.mark.skipif(sys.version_info < (3, 9), reason="zoneinfo arrived in 3.9")
def test_named_zones_are_honoured():
    bounds = {"time_bounds": {"hours": "11:00-13:00", "timezone": "Asia/Tokyo"}}  # noon UTC is 21:00 in Tokyo
    assert reason(bounds) == ev.REASON_TIME_WINDOW
    tokyo_evening = {"time_bounds": {"hours": "20:00-22:00", "days": ["wed"], "timezone": "Asia/Tokyo"}}
    assert reason(tokyo_evening) == ev.REASON_ALLOWED
    assert reason({"time_bounds": {"timezone": "America/Los_Angeles", "days": ["wed"]}}) == ev.REASON_ALLOWED


@pytest.mark.skipif(sys.version_info < (3, 9), reason="zoneinfo arrived in 3.9")
def test_unknown_time_zones_deny():
    """Official flaw S5: "Mars/Olympus" silently became UTC; "", "../etc/passwd" raised."""
    assert reason({"time_bounds": {"timezone": "Mars/Olympus"}}) == ev.REASON_UNKNOWN_TIMEZONE
    for bad in ("", "../etc/passwd", 5, ["UTC"]):
        assert reason({"time_bounds": {"timezone": bad}}) == ev.REASON_MALFORMED_CONSTRAINT, bad


@pytest.mark.skipif(sys.version_info >= (3, 9), reason="only interpreters without zoneinfo")
def test_without_zoneinfo_any_named_zone_denies():  # pragma: no cover - runs on 3.8
    assert reason({"time_bounds": {"timezone": "Europe/Paris"}}) == ev.REASON_TIMEZONE_UNAVAILABLE
    assert reason({"time_bounds": {"timezone": "UTC", "hours": "11:00-13:00"}}) == ev.REASON_ALLOWED


def test_evaluate_batch_and_constraints():
    results = NOON.evaluate_batch([CAP, "other", "stripe.customers.read"], SCOPES, {"max_amount_cents": 5})
    assert results == {
        CAP: (True, "allowed"),
        "other": (False, ev.REASON_NOT_IN_SCOPE),
        "stripe.customers.read": (True, "allowed"),
    }
    assert NOON.evaluate_batch([CAP], SCOPES, {}, deny_always={CAP})[CAP].reason == ev.REASON_DENY_ALWAYS
    assert NOON.evaluate_constraints({"max_amount_cents": 5}, {"amount_cents": 6}) == (
        False,
        ev.REASON_AMOUNT_EXCEEDED,
    )
    assert NOON.evaluate_constraints({}, {}) == (True, ev.REASON_ALLOWED)
    assert NOON.evaluate_constraints(None, {}) == (False, ev.REASON_MALFORMED_CONSTRAINT)
    assert NOON.evaluate(CAP, SCOPES, {}, ["not", "a", "mapping"]).reason == ev.REASON_INVALID_CONTEXT  # type: ignore[arg-type]


def test_explain_says_what_to_fix_without_echoing_arguments():
    result, detail = NOON.explain(
        CAP, SCOPES, {"max_amount_cents": 5000}, {"amount_cents": "sk_live_SECRET1234"}
    )
    assert result.reason == ev.REASON_INVALID_AMOUNT
    assert "integer" in detail and "sk_live" not in detail
    result, detail = NOON.explain(CAP, SCOPES, {"time_bounds": {"hours": "9-17"}})
    assert "HH:MM-HH:MM" in detail and "'9-17'" in detail
    assert NOON.explain(CAP, SCOPES, {}) == ((True, "allowed"), "")


def test_inf_and_nan_never_raise():
    """Official: float('inf') raised OverflowError out of the tool call."""
    for value in (math.inf, math.nan):
        assert reason({"max_amount_cents": 1}, {"amount_cents": value}) == ev.REASON_INVALID_AMOUNT
        assert reason({"max_results": 1}, {"result_count": value}) == ev.REASON_INVALID_RESULT_COUNT

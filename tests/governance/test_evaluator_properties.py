"""Properties of the evaluator (hypothesis): it never raises on any JSON-like input, and never
allows what a stricter input denies (official flaw S5: it failed open, and raised, on bad data)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from oculus_lite import evaluator as ev
from oculus_lite.evaluator import CapabilityEvaluator

from .conftest import NOON_WEDNESDAY

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
hours = st.one_of(
    st.builds("{:02d}:{:02d}-{:02d}:{:02d}".format, *(st.integers(0, 25), st.integers(0, 61)) * 2),
    st.text(max_size=12),
)
time_bounds = st.fixed_dictionaries(
    {},
    optional={
        "days": st.one_of(
            st.lists(st.sampled_from(["mon", "Tue", "wednesday", "sun", "Funday"]), max_size=3), json_values
        ),
        "hours": st.one_of(hours, json_values),
        "timezone": st.one_of(st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus", ""]), json_values),
    },
)
constraints = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "time_bounds": st.one_of(time_bounds, json_values),
            "max_amount_cents": st.one_of(st.integers(-5, 10**6), json_values),
            "task_context_required": st.one_of(st.booleans(), json_values),
            "max_results": st.one_of(st.integers(-5, 100), json_values),
            "unknown": json_values,
        },
    ),
    json_values,
)
contexts = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "task_id": st.one_of(st.text(max_size=5), json_values),
            "amount_cents": st.one_of(st.integers(-10, 10**7), json_values),
            "result_count": st.one_of(st.integers(-3, 200), json_values),
        },
    ),
)
capabilities = st.sampled_from(["a.read", "a.write", "b:x:y", ""])
scopes = st.one_of(
    st.frozensets(st.sampled_from(["a.read", "a.write", "b:x:y", "a.*"])),
    st.text(max_size=20),
    st.lists(st.sampled_from(["a.read", "a.write"])),
)
clock = st.floats(min_value=0, max_value=4e9)


@settings(max_examples=200, deadline=None)
@given(capabilities, scopes, constraints, contexts, clock)
def test_evaluate_never_raises(capability, token_scopes, constraint_set, context, now):
    evaluator = CapabilityEvaluator(now=lambda: now)
    result = evaluator.evaluate(capability, token_scopes, constraint_set, context, deny_always={"a.write"})
    assert result.reason in ev.REASONS
    assert result.allowed == (result.reason == ev.REASON_ALLOWED)
    allowed, reason = evaluator.evaluate_constraints(constraint_set, context or {})
    assert reason in ev.REASONS
    batch = evaluator.evaluate_batch(["a.read", "b:x:y"], token_scopes, constraint_set, context)
    assert set(batch) == {"a.read", "b:x:y"}


@settings(max_examples=120, deadline=None)
@given(capabilities, scopes, constraints, contexts, st.sampled_from(["a.read", "a.write", "b:x:y"]))
def test_fewer_scopes_or_more_denials_never_allow_more(
    capability, token_scopes, constraint_set, context, removed
):
    evaluator = CapabilityEvaluator(now=lambda: NOON_WEDNESDAY)
    base = evaluator.evaluate(capability, token_scopes, constraint_set, context)
    granted = token_scopes.split() if isinstance(token_scopes, str) else token_scopes
    fewer = frozenset(granted) - {removed}
    if not base.allowed:
        assert not evaluator.evaluate(capability, fewer, constraint_set, context).allowed
        assert not evaluator.evaluate(
            capability, token_scopes, constraint_set, context, deny_always={removed}
        ).allowed


@settings(max_examples=120, deadline=None)
@given(constraints, contexts, json_values)
def test_adding_a_constraint_never_allows_more(constraint_set, context, extra):
    evaluator = CapabilityEvaluator(now=lambda: NOON_WEDNESDAY)
    if not isinstance(constraint_set, dict):
        return
    base = evaluator.evaluate("a.read", {"a.read"}, constraint_set, context)
    for key in ("time_bounds", "max_amount_cents", "task_context_required", "max_results", "other"):
        if key in constraint_set:
            continue
        stricter = dict(constraint_set, **{key: extra})
        if not base.allowed:
            assert not evaluator.evaluate("a.read", {"a.read"}, stricter, context).allowed, key


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.sampled_from(["max_amount_cents", "max_results"]),
)
def test_a_larger_amount_or_a_smaller_cap_never_allows_more(cap, small, large, kind):
    small, large = sorted((small, large))
    evaluator = CapabilityEvaluator(now=lambda: NOON_WEDNESDAY)
    field = "amount_cents" if kind == "max_amount_cents" else "result_count"
    allowed_large = evaluator.evaluate("a.read", {"a.read"}, {kind: cap}, {field: large}).allowed
    allowed_small = evaluator.evaluate("a.read", {"a.read"}, {kind: cap}, {field: small}).allowed
    assert allowed_small or not allowed_large
    assert allowed_large == (large <= cap)
    tighter = max(0, cap - 1)
    if not evaluator.evaluate("a.read", {"a.read"}, {kind: cap}, {field: large}).allowed:
        assert not evaluator.evaluate("a.read", {"a.read"}, {kind: tighter}, {field: large}).allowed


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59), st.floats(0, 4e9))
def test_a_window_allows_exactly_its_minutes(sh, sm, eh, em, now):
    start, end = sh * 60 + sm, eh * 60 + em
    window = {"time_bounds": {"hours": "{:02d}:{:02d}-{:02d}:{:02d}".format(sh, sm, eh, em)}}
    result = CapabilityEvaluator(now=lambda: now).evaluate("a.read", {"a.read"}, window)
    if start == end:
        assert result.reason == ev.REASON_MALFORMED_CONSTRAINT
        return
    minute = int(now // 60) % 1440
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    assert result.allowed == inside

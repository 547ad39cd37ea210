"""Property-based tests (hypothesis): whatever a server or a caller throws at the parsers,
normalisers and configuration checks, the only exceptions are ``OculusError`` subclasses,
and scope normalisation is idempotent and order-insensitive."""

import json
import math
import os
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from oculus_lite._config import check_text, validate_base_url  # noqa: E402
from oculus_lite._engine import SYSTEM_CLOCK  # noqa: E402
from oculus_lite._http import _send as _http  # noqa: E402
from oculus_lite.exceptions import (  # noqa: E402
    ConfigurationError,
    InvalidResponseError,
    OculusAPIError,
    OculusError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from oculus_lite.tokens._oauth import TokenEndpoint, lifetime, normalise_scope  # noqa: E402
from oculus_lite.transport import Response  # noqa: E402

# Hypothesis' default number of examples (100) in every run, no deadline (generating examples
# is what takes the time); OCULUS_HYPOTHESIS_EXAMPLES=5000 for a deeper local run.
SETTINGS = settings(
    max_examples=int(os.environ.get("OCULUS_HYPOTHESIS_EXAMPLES", "100")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Retry-After", "Date", "ETag", "X-Other"]), header_values, max_size=4
)
statuses = st.integers(min_value=100, max_value=599)

# Bodies: random bytes, random JSON, and JSON shaped like the error/token bodies we parse.
error_shapes = st.one_of(
    st.fixed_dictionaries({"error": st.fixed_dictionaries({"code": json_values, "message": json_values})}),
    st.fixed_dictionaries({"error": json_values, "error_description": json_values}),
    st.fixed_dictionaries({"code": json_values, "message": json_values, "detail": json_values}),
    st.fixed_dictionaries(
        {"error": st.fixed_dictionaries({"code": st.text(), "message": st.text(), "details": json_values})}
    ),
)
token_shapes = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(st.text(max_size=60), json_values),
        "expires_in": st.one_of(
            json_values,
            st.floats(),
            st.text(max_size=10),
            st.sampled_from(["600", "nan", "inf", "-inf", "1e400", "-5", " 30 "]),
        ),
        "refresh_token": json_values,
        "token_type": json_values,
        "scope": json_values,
        "sdk_service_token": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    error_shapes.map(lambda v: json.dumps(v).encode()),
    token_shapes.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=100).map(lambda t: t.encode("utf-8")),
)

SECRET = "canary-S3CRET-7f3a9c"


@SETTINGS
@given(status=statuses, hdrs=headers, body=bodies)
def test_parse_json_returns_a_dict_or_a_typed_error(status, hdrs, body):
    try:
        data = _http.parse_json(Response(status, hdrs, body), "thing")
    except OculusError as exc:
        assert isinstance(exc, InvalidResponseError) and "thing" in str(exc)
    else:
        assert isinstance(data, dict)


@SETTINGS
@given(status=st.integers(min_value=300, max_value=599), hdrs=headers, body=bodies)
@example(status=500, hdrs={}, body=json.dumps({"error": {"code": "x", "message": SECRET}}).encode())
@example(status=401, hdrs={}, body=json.dumps({"error": "x", "error_description": "x" + SECRET}).encode())
@example(status=422, hdrs={}, body=json.dumps({"error": {"details": {SECRET: [SECRET]}}}).encode())
def test_error_from_response_is_always_typed_and_scrubbed(status, hdrs, body):
    error = _http.error_from_response(Response(status, hdrs, body), what="call", secrets=[SECRET])
    assert isinstance(error, OculusAPIError)
    assert error.status_code == status
    assert str(error).startswith("call")
    assert SECRET not in str(error) and SECRET not in repr(error) and SECRET not in repr(error.details)
    if status == 429:
        assert isinstance(error, RateLimitError)
        assert error.retry_after is None or (error.retry_after >= 0 and math.isfinite(error.retry_after))
    elif status >= 500:
        assert isinstance(error, ServerError) and error.retryable
    assert len(str(error)) < 2000  # server text is bounded


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": SECRET, "message": "m"}},
        {"error": SECRET, "error_description": "d"},
        {"code": SECRET},
    ],
)
def test_error_code_echoing_a_secret_is_scrubbed(body):
    error = _http.error_from_response(Response(401, {}, json.dumps(body).encode()), secrets=[SECRET])
    assert SECRET not in str(error)
    assert SECRET not in repr(error) and SECRET not in str(error.code)


@SETTINGS
@given(value=st.one_of(st.none(), st.text(max_size=60), header_values))
@example(value="Fri, 31 Dec 9999 23:59:59 GMT")
@example(value="Mon, 01 Jan 0001 00:00:00 GMT")
@example(value="1e400")
@example(value="nan")
@example(value="-5")
def test_parse_retry_after_is_none_or_a_finite_non_negative_number(value):
    seconds = _http.parse_retry_after(value)
    assert seconds is None or (isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0)


#: The token endpoint's sans-IO half: the client hands every 2xx reply to ``parse``.
ENDPOINT = TokenEndpoint("http://127.0.0.1:9", "id", SECRET, timeout=10.0, margin=10.0)


@SETTINGS
@given(status=st.sampled_from([200, 201, 203]), hdrs=headers, body=bodies)
def test_token_response_parsing_never_escapes_the_hierarchy(status, hdrs, body):
    sent_at = time.monotonic()
    try:
        entry = ENDPOINT.parse("db:read", Response(status, hdrs, body), sent_at, SYSTEM_CLOCK)
    except OculusError as exc:
        assert isinstance(exc, OculusAPIError) and SECRET not in str(exc)
        return
    data = json.loads(body.decode("utf-8"))
    assert entry.token == data["access_token"] and isinstance(entry.token, str) and entry.token
    assert sent_at <= entry.expires <= sent_at + 366 * 86400.0
    assert entry.refresh_at <= entry.margin_at <= entry.expires
    assert entry.refresh_token is None or isinstance(entry.refresh_token, str)


def test_token_response_with_a_huge_integer_lifetime():
    body = b'{"access_token": "t", "expires_in": 1' + b"0" * 400 + b"}"
    entry = ENDPOINT.parse("db:read", Response(200, {}, body), time.monotonic(), SYSTEM_CLOCK)
    assert entry.token == "t"


@SETTINGS
@given(value=st.one_of(json_values, st.floats(), st.text(max_size=12), st.integers()))
@example(value=10**400)
@example(value="1e400")
@example(value=float("nan"))
@example(value=True)
def test_lifetime_is_always_a_finite_bounded_number(value):
    seconds = lifetime(value)
    assert isinstance(seconds, float) and 0.0 <= seconds <= 366 * 86400.0


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000], ids=["arrays", "objects"])
def test_deeply_nested_json_is_a_typed_error(body):
    with pytest.raises(InvalidResponseError):
        _http.parse_json(Response(200, {}, body), "thing")
    assert isinstance(_http.error_from_response(Response(500, {}, body)), ServerError)


# ------------------------------------------------------------------ scope normalisation

segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.*", min_size=1, max_size=8)
scope_part = st.lists(segment, min_size=1, max_size=4).map(":".join)


@SETTINGS
@given(parts=st.lists(scope_part, min_size=1, max_size=20), data=st.data())
def test_normalisation_is_idempotent_and_order_insensitive(parts, data):
    scope = " ".join(parts)
    norm = normalise_scope(scope)
    assert normalise_scope(norm) == norm
    shuffled = data.draw(st.permutations(parts))
    spaced = data.draw(st.sampled_from([" ", "  ", "   "])).join(shuffled)
    assert normalise_scope(spaced) == norm
    assert normalise_scope(" " + scope + " " + parts[0]) == norm  # padding and duplicates
    assert set(norm.split(" ")) == set(parts)


@SETTINGS
@given(
    value=st.one_of(
        st.text(max_size=200),
        st.text(alphabet=st.characters(max_codepoint=0x3000), max_size=50),
        st.integers(),
        st.binary(max_size=20),
        st.lists(st.text(max_size=5), max_size=3),
        st.none(),
        st.floats(),
    )
)
@example(value="a " * 70)
@example(value="x" * 5000)
def test_normalisation_raises_only_validation_errors(value):
    try:
        norm = normalise_scope(value)
    except OculusError as exc:
        assert isinstance(exc, ValidationError) and exc.status_code is None
    else:
        assert isinstance(norm, str) and norm and "  " not in norm
        assert normalise_scope(norm) == norm


# ------------------------------------------------------------------ configuration

url_text = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda scheme, user, host, port, path: "{}://{}{}{}{}".format(scheme, user, host, port, path),
        st.sampled_from(["http", "https", "HTTP", "ftp", "file", "", "h ttp"]),
        st.sampled_from(["", "user@", "u:p@", ":@", "@"]),
        st.one_of(
            st.sampled_from(
                ["127.0.0.1", "localhost", "[::1]", "api.example.com", "10.0.0.1", "[::1", "", "0"]
            ),
            st.text(max_size=15),
        ),
        st.sampled_from(["", ":0", ":8400", ":99999", ":-1", ":x", ":"]),
        st.one_of(st.sampled_from(["", "/", "/v1/", "?q=1", "#f", "/a b"]), st.text(max_size=10)),
    ),
)


@SETTINGS
@given(url=url_text, insecure=st.booleans())
@example(url="http://[::1]:65535/", insecure=False)
@example(url="https://xn--nxasmq6b.example/", insecure=False)
def test_validate_base_url_returns_a_safe_url_or_a_configuration_error(url, insecure):
    try:
        clean = validate_base_url(url, allow_insecure_http=insecure)
    except OculusError as exc:
        assert isinstance(exc, ConfigurationError)
        return
    assert clean.startswith(("http://", "https://"))
    assert "@" not in clean.split("//", 1)[1].split("/", 1)[0]
    assert not clean.endswith("/")
    assert validate_base_url(clean, allow_insecure_http=insecure) == clean


@SETTINGS
@given(
    value=st.one_of(st.text(max_size=300), st.integers(), st.none(), st.binary(max_size=10), st.floats()),
    max_len=st.integers(min_value=1, max_value=200),
    allow_empty=st.booleans(),
)
def test_check_text_returns_the_value_or_raises_the_requested_error(value, max_len, allow_empty):
    for error in (ValidationError, ConfigurationError):
        try:
            out = check_text(value, "field", max_len=max_len, allow_empty=allow_empty, error=error)
        except OculusError as exc:
            assert type(exc) is error and "field" in str(exc)
        else:
            assert out is value and isinstance(out, str) and len(out) <= max_len
            assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in out)

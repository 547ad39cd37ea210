"""The governance exceptions: official constructor signatures (positional order included),
today's keyword forms, one hierarchy, and no secret in any message."""

import pytest

import oculus_lite
from oculus_lite import exceptions as exc

SECRET = "sk_live_EXCEPTIONSECRET99"


def test_official_names_are_exported_from_both_places():
    for name in (
        "TokenExpiredError",
        "PolicyViolationError",
        "CredentialError",
        "OculusStartupError",
        "DelegationError",
        "EnrollmentError",
        "TokenRevokedException",
        "OculusAPIError",
        "OculusAuthError",
    ):
        assert getattr(oculus_lite, name) is getattr(exc, name)
        assert issubclass(getattr(exc, name), exc.OculusError)
    assert issubclass(exc.EnrollmentError, exc.OculusAuthError)


def test_policy_violation_error_official_form_and_message():
    error = exc.PolicyViolationError("stripe.charges.create", "amount_limit_exceeded", {"a", "b"}, "pol-9")
    assert str(error) == "Capability 'stripe.charges.create' denied: amount_limit_exceeded (policy: pol-9)"
    assert (error.capability, error.reason, error.policy_id) == (
        "stripe.charges.create",
        "amount_limit_exceeded",
        "pol-9",
    )
    assert error.granted_capabilities == {"a", "b"}
    assert error.code == "amount_limit_exceeded"
    plain = exc.PolicyViolationError("x", "capability_not_in_scope")
    assert str(plain) == "Capability 'x' denied: capability_not_in_scope"
    assert plain.granted_capabilities == set() and plain.policy_id is None
    keywords = exc.PolicyViolationError(
        capability="x", reason="r", granted_capabilities=["a"], policy_id=None
    )
    assert keywords.granted_capabilities == {"a"}


def test_credential_error_forms():
    error = exc.CredentialError("stripe")
    assert error.integration == "stripe" and "'stripe'" in str(error)
    assert "/v1/credentials/register" not in str(error)  # the official text names an admin route
    assert str(exc.CredentialError("stripe", "custom text")) == "custom text"
    typed = exc.CredentialError("stripe", credential_type="api_key")
    assert typed.credential_type == "api_key" and "'api_key'" in str(typed)


def test_startup_error_forms_and_secret_free_message():
    assert exc.OculusStartupError("fetch_jwks").step == "fetch_jwks"
    cause = ValueError("client_secret=" + SECRET)
    error = exc.OculusStartupError("fetch_token", None, cause)
    assert error.step == "fetch_token" and error.cause is cause and error.__cause__ is cause
    assert SECRET not in str(error) and SECRET not in repr(error)
    assert "fetch_token" in str(error) and "ValueError" in str(error)
    api = exc.ServerError("token endpoint failed: HTTP 503", status_code=503)
    assert "HTTP 503" in str(exc.OculusStartupError("fetch_token", cause=api))
    assert str(exc.OculusStartupError("s", "told")) == "told"


def test_delegation_and_expiry_forms():
    error = exc.DelegationError("CAPABILITY_ESCALATION")
    assert error.reason == "CAPABILITY_ESCALATION" and error.code == "CAPABILITY_ESCALATION"
    assert str(error) == "Delegation failed: CAPABILITY_ESCALATION"
    assert str(exc.DelegationError("X", "the parent lacks it")) == "the parent lacks it"
    expired = exc.TokenExpiredError("the agent token has expired")
    assert str(expired) == "the agent token has expired"
    assert "startup()" not in str(exc.TokenExpiredError())  # C6: never tells users to call startup() again


@pytest.mark.parametrize(
    "make, jti, message",
    [
        (lambda: exc.TokenRevokedException("jti-1"), "jti-1", "token 'jti-1' has been revoked"),
        (lambda: exc.TokenRevokedException("jti-1", "gone"), "jti-1", "gone"),
        (lambda: exc.TokenRevokedException(jti="jti-1", message="gone"), "jti-1", "gone"),
        (
            lambda: exc.TokenRevokedException("cached token revoked", jti="jti-2"),
            "jti-2",
            "cached token revoked",
        ),
    ],
)
def test_token_revoked_official_and_keyword_forms(make, jti, message):
    error = make()
    assert error.jti == jti and str(error) == message


def test_api_error_positional_and_keyword_forms():
    official = exc.OculusAPIError("boom", 502, {"k": 1})
    assert (official.status_code, dict(official.details)) == (502, {"k": 1})
    ours = exc.OculusAPIError("boom", code="server_error", details={"a": 2}, status_code=500)
    assert (ours.code, ours.status_code, dict(ours.details)) == ("server_error", 500, {"a": 2})
    auth = exc.OculusAuthError("denied", 401)
    assert auth.status_code == 401
    limited = exc.RateLimitError("slow down", 429, retry_after=2.0, code="rate_limited")
    assert (limited.status_code, limited.retry_after, limited.code) == (429, 2.0, "rate_limited")
    for cls in (
        exc.AuthenticationError,
        exc.ForbiddenError,
        exc.ValidationError,
        exc.ServerError,
        exc.EnrollmentError,
    ):
        made = cls("text", code="c", details={}, status_code=400)
        assert made.status_code == 400 and made.code == "c"


def test_project_and_map_errors_are_typed():
    assert issubclass(exc.ProjectFileError, exc.ConfigurationError)
    assert issubclass(exc.CapabilityMapError, exc.InvalidResponseError)
    assert exc.ProjectFileError("bad", path="/x").path == "/x"
    assert exc.CapabilityMapError("bad", path="integrations.a").path == "integrations.a"

"""Credentials: read-only, never printed at any level, and CredentialError from every accessor
(official flaws S6 "credentials returns the live secret dict" and C4/C15 "empty dict")."""

import pickle

import pytest

from oculus_lite.exceptions import CredentialError
from oculus_lite.governance._credentials import Credentials, IntegrationCredentials

VALUE = "sk_live_CREDENTIALVALUE123"


@pytest.fixture
def creds():
    return Credentials(
        {"stripe": {"api_key": VALUE, "webhook_secret": "whsec_OTHERVALUE"}, "github": {"token": "t0"}}
    )


def test_values_are_reachable_only_by_asking(creds):
    assert creds["stripe"]["api_key"] == VALUE
    assert creds.get("stripe").get("api_key") == VALUE
    assert dict(creds["stripe"]) == {"api_key": VALUE, "webhook_secret": "whsec_OTHERVALUE"}
    assert sorted(creds) == ["github", "stripe"] and len(creds) == 2 and "stripe" in creds
    assert sorted(creds["stripe"]) == ["api_key", "webhook_secret"] and "api_key" in creds["stripe"]


def test_repr_and_str_never_show_a_value_at_any_level(creds):
    texts = [repr(creds), str(creds), "{}".format(creds), repr(creds["stripe"]), str(creds["stripe"])]
    texts += [f"{creds['stripe']}", repr(list(creds.values())), repr(dict(creds))]
    for text in texts:
        assert VALUE not in text and "whsec_OTHERVALUE" not in text and "t0'" not in text
    assert "stripe" in repr(creds) and "api_key" in repr(creds["stripe"])


def test_missing_integration_or_type_raises_credential_error(creds):
    with pytest.raises(CredentialError) as raised:
        creds["slack"]
    assert raised.value.integration == "slack"
    with pytest.raises(CredentialError):
        creds.get("slack")
    with pytest.raises(CredentialError) as raised:
        creds["stripe"]["password"]
    assert (raised.value.integration, raised.value.credential_type) == ("stripe", "password")
    with pytest.raises(CredentialError):
        creds["stripe"].get("password")
    assert creds.get("slack", None) is None  # an explicit default is honoured
    assert creds["stripe"].get("password", "fallback") == "fallback"
    assert "slack" not in creds


def test_read_only_and_not_picklable(creds):
    with pytest.raises(TypeError):
        creds["x"] = {}  # type: ignore[index,unused-ignore]
    with pytest.raises(TypeError):
        creds["stripe"]["api_key"] = "other"  # type: ignore[index,unused-ignore]
    with pytest.raises(TypeError):  # no __dict__: vars() shows nothing (official: a plain attribute)
        vars(creds)
    with pytest.raises(TypeError):
        pickle.dumps(creds)
    with pytest.raises(TypeError):
        pickle.dumps(creds["stripe"])


def test_rotation_returns_a_new_mapping(creds):
    rotated = creds.with_value("stripe", "api_key", "sk_live_ROTATED0001")
    assert rotated["stripe"]["api_key"] == "sk_live_ROTATED0001"
    assert creds["stripe"]["api_key"] == VALUE
    added = creds.with_value("slack", "bot_token", "xoxb-1")
    assert added["slack"]["bot_token"] == "xoxb-1" and "slack" not in creds
    assert set(added.secrets()) == {VALUE, "whsec_OTHERVALUE", "t0", "xoxb-1"}
    assert isinstance(added["slack"], IntegrationCredentials) and added["slack"].integration == "slack"

"""The capability map: strict parsing with a typed error naming the bad part, deny_always,
integration_of for dotted and colon names, and custom capabilities that survive refreshes
(official flaw C11)."""

import pytest

from oculus_lite.exceptions import CapabilityMapError
from oculus_lite.governance._capability_map import EMPTY_MAP, CapabilityMap

WIRE = {
    "integrations": {
        "stripe": {
            "capabilities": {
                "stripe.charges.create": {"risk": "high", "tags": ["money"]},
                "stripe.customers.read": None,
            },
            "deny_always": ["stripe.payouts.create"],
        },
        "github": {"capabilities": {"github:repo:read": {}}},
        "custom": {"capabilities": {}},
    }
}


def test_parse_the_wire_shape():
    parsed = CapabilityMap.from_wire(WIRE, etag='"v1"')
    assert set(parsed.integrations) == {"stripe", "github", "custom"}
    assert parsed.deny_always == {"stripe.payouts.create"}
    assert parsed.integrations["stripe"].capabilities["stripe.charges.create"]["tags"] == ("money",)
    assert parsed.etag == '"v1"'
    assert parsed.integration_names() == ("stripe", "github")
    with pytest.raises(TypeError):
        parsed.integrations["stripe"].capabilities["stripe.charges.create"]["risk"] = "low"  # type: ignore[index]


def test_integration_of_both_naming_forms():
    parsed = CapabilityMap.from_wire(WIRE)
    assert parsed.integration_of("stripe.charges.create") == "stripe"
    assert parsed.integration_of("stripe:customer:read") == "stripe"  # official: mapped to nothing
    assert parsed.integration_of("github:repo:read") == "github"
    assert parsed.integration_of("slack.chat.post") == "slack"
    assert parsed.integration_of("noseparator") is None
    assert parsed.integration_of("stripe.payouts.create") == "stripe"


@pytest.mark.parametrize(
    "wire, path",
    [
        ([], "the body"),
        ({}, "integrations"),
        ({"integrations": []}, "integrations"),
        ({"integrations": {"stripe": []}}, "integrations.stripe"),
        ({"integrations": {"": {}}}, "integrations."),
        ({"integrations": {"stripe": {"capabilities": ["a"]}}}, "integrations.stripe.capabilities"),
        ({"integrations": {"stripe": {"capabilities": {"a": 5}}}}, "integrations.stripe.capabilities.a"),
        ({"integrations": {"stripe": {"deny_always": "a"}}}, "integrations.stripe.deny_always"),
        ({"integrations": {"stripe": {"deny_always": None}}}, "integrations.stripe.deny_always"),
        ({"integrations": {"stripe": {"deny_always": ["a", 3]}}}, "integrations.stripe.deny_always[1]"),
    ],
)
def test_malformed_maps_raise_a_typed_error_naming_the_part(wire, path):
    with pytest.raises(CapabilityMapError) as raised:
        CapabilityMap.from_wire(wire)
    assert raised.value.path == path
    assert path in str(raised.value)


def test_custom_capabilities_survive_a_refresh():
    """Official flaw C11: the background map refresh erased the oculus.yaml custom capabilities."""
    with_custom = EMPTY_MAP.with_custom({"reports.generate": {"description": "monthly"}})
    refreshed = with_custom.refreshed(WIRE, etag='"v2"')
    assert "reports.generate" in refreshed.custom and refreshed.etag == '"v2"'
    assert "reports.generate" in refreshed.capabilities and "stripe.charges.create" in refreshed.capabilities
    assert refreshed.refreshed({"integrations": {}}).custom == refreshed.custom
    assert refreshed.integration_of("reports.generate") == "reports"

"""Property test of the token endpoint's parser: whatever tokens a server sends, only a
b64token access token and a printable-ASCII refresh token ever come out."""

import json
import re
from typing import Any, Dict

import pytest

from oculus_lite._engine import ManualClock
from oculus_lite.exceptions import InvalidResponseError
from oculus_lite.tokens._oauth import TokenEndpoint
from oculus_lite.transport import Response

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ENDPOINT = TokenEndpoint("http://127.0.0.1:9", "id", "canary-S3CRET-7f3a9c", timeout=10.0, margin=10.0)
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
tokens = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="AZaz09-._~+/= \r\n\t\x00\u00a0", max_size=20),
    st.none(),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=2),
)


def _parse(body: Dict[str, Any]) -> Any:
    return ENDPOINT.parse("db:read", Response(200, {}, json.dumps(body).encode()), 0.0, ManualClock())


@settings(max_examples=500, deadline=None, database=None)
@given(token=tokens, refresh=tokens, service=tokens, token_type=tokens)
def test_whatever_the_server_sends_only_safe_tokens_come_out(token, refresh, service, token_type):
    body = {"access_token": token, "refresh_token": refresh, "sdk_service_token": service}
    body["token_type"] = token_type
    try:
        entry = _parse(body)
    except InvalidResponseError as exc:
        assert exc.status_code == 200 and "canary-S3CRET" not in str(exc)
        return
    assert isinstance(entry.token, str) and B64TOKEN.fullmatch(entry.token)
    assert entry.refresh_token is None or re.fullmatch(r"[\x21-\x7e]+", entry.refresh_token)
    service_token = (entry.extra or {}).get("sdk_service_token")
    assert service_token is None or re.fullmatch(r"[\x21-\x7e]+", service_token)
    assert token_type is None or token_type.lower() == "bearer"

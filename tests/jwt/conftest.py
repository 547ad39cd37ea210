"""Fixtures for the verifier tests: verifiers that are always closed, and our own JWKS server."""

from typing import Any, Callable, Iterator, List

import pytest

from oculus_lite.jwt import JwksVerifier

from .jwks_server import JwksServer, jwk, rsa_key


@pytest.fixture
def make_verifier() -> Iterator[Callable[..., JwksVerifier]]:
    made: List[JwksVerifier] = []

    def make(*args: Any, **kwargs: Any) -> JwksVerifier:
        kwargs.setdefault("revocation_interval", None)
        verifier = JwksVerifier(*args, **kwargs)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    """A JWKS serving one 2048-bit RS256 key with kid 'k1'."""
    with JwksServer([jwk(rsa_key(2048, 0), "k1")]) as server:
        yield server

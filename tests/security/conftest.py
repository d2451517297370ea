"""Fixtures of the security tests: a local OIDC issuer (tests/security/test_oidc.py's Issuer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.test_oidc import Issuer


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    """An OIDC issuer on 127.0.0.1 (discovery document and JWKS), stopped after the test."""
    found = Issuer()
    found.thread.start()
    try:
        yield found
    finally:
        found.httpd.shutdown()
        found.httpd.server_close()
        found.thread.join(5)

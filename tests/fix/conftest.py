"""Fixtures of the fix-loop tests: a server that allows writes."""

from __future__ import annotations

import pytest

from settings import Settings


@pytest.fixture
def settings(write_settings: Settings) -> Settings:  # overrides tests/conftest.py: writes switched on
    return write_settings

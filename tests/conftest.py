"""Shared fixtures."""

from __future__ import annotations

import pytest

from rtl.config import load_config


@pytest.fixture(params=["tiny", "default", "wide", "large"])
def preset(request):
    return load_config(request.param)

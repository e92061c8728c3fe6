"""Fixtures shared by the test folders; the helpers themselves live in helpers.py (any
install) and pipeline_helpers.py (the full install), imported by name."""

from __future__ import annotations

import pytest

import normbounds  # noqa: F401  first, before any test module imports torch: it pins the kernels


@pytest.fixture
def tiny_cfg():
    from normbounds.config import parse_params  # the pipeline's: not in tests/measure/

    from pipeline_helpers import tiny_params

    return parse_params(tiny_params())

"""Fixtures shared by the test folders; the helpers themselves live in helpers.py (any
install) and pipeline_helpers.py (the full install), imported by name."""

from __future__ import annotations

import os

import pytest

from normbounds.reproducibility import pin_kernels

# first, before any test module imports torch: the tests compare numbers with the pipeline's,
# and tests/measure/ imports nothing that pins them
pin_kernels()

# pytest -n 2 on a 2-core machine: one thread per worker. Two workers of two threads each
# oversubscribe the cores, and the small ops of the tests then wait on each other's spinning
# threads (a validity case took 42 s beside another worker's training, 3 s alone).
# The programs the tests start inherit it (a DVC stage sets its own, base.threads).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_cfg():
    from normbounds.pipeline.config import parse_params  # the pipeline's: not in tests/measure/

    from pipeline_helpers import tiny_params

    return parse_params(tiny_params())

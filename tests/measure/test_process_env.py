"""What `import normbounds.measure` does to the process's environment, as docs/api.md
says: the five pinned-kernel variables, or nothing at all with NORMBOUNDS_NATIVE_KERNELS=1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from normbounds.reproducibility import KERNEL_ENV, NATIVE_SWITCH

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CHANGED = ("import json, os; before = dict(os.environ); import normbounds.measure;"
           " print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))")


def _changed(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV and k != NATIVE_SWITCH}
    run = subprocess.run([sys.executable, "-c", CHANGED], env=base | env,
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


@pytest.mark.slow  # fresh Pythons
def test_importing_the_api_sets_the_pinned_kernels_and_nothing_else():
    assert _changed() == KERNEL_ENV


@pytest.mark.slow  # fresh Pythons
def test_native_kernels_leave_the_environment_untouched():
    assert _changed(**{NATIVE_SWITCH: "1"}) == {}


def test_the_api_docs_list_every_variable_it_sets():
    text = " ".join(DOCS.read_text().split())
    assert ", ".join(f"`{k}={v}`" for k, v in KERNEL_ENV.items()) in text
    assert f"`{NATIVE_SWITCH}=1` before importing normbounds: then nothing is set" in text

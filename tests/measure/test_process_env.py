"""What importing normbounds does to the process's environment, as docs/api.md says:
`import normbounds.measure` changes nothing; `pin_kernels()` (asked for, or by importing the
pipeline) sets the five pinned-kernel variables; with NORMBOUNDS_NATIVE_KERNELS=1 it sets none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from normbounds.reproducibility import KERNEL_ENV, NATIVE_SWITCH

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CHANGED = ("import json, os; before = dict(os.environ); {code};"
           " print(json.dumps({{k: v for k, v in os.environ.items() if before.get(k) != v}}))")
API = "import normbounds.measure, normbounds.report"
ASK = ("from normbounds.reproducibility import pin_kernels; pin_kernels(); import torch",
       "import normbounds.pipeline")  # the pipeline asks on import: every stage, the CLI


def _changed(code: str, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV and k != NATIVE_SWITCH}
    run = subprocess.run([sys.executable, "-c", CHANGED.format(code=code)], env=base | env,
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


@pytest.mark.slow  # fresh Pythons
def test_importing_the_api_changes_no_environment_variable():
    assert _changed(API) == {}


@pytest.mark.slow  # fresh Pythons
@pytest.mark.parametrize("ask", ASK)
def test_asking_for_the_pins_sets_exactly_the_five_variables(ask):
    assert _changed(ask) == KERNEL_ENV


@pytest.mark.slow  # fresh Pythons
@pytest.mark.parametrize("ask", ASK)
def test_native_kernels_leave_the_environment_untouched_even_when_asked(ask):
    assert _changed(ask, **{NATIVE_SWITCH: "1"}) == {}


def test_the_api_docs_list_every_variable_and_how_to_ask():
    text = " ".join(DOCS.read_text().split())
    assert ", ".join(f"`{k}={v}`" for k, v in KERNEL_ENV.items()) in text
    assert f"{ASK[0].split('; import')[0]} # before torch" in text  # the docs' first line
    assert f"`{NATIVE_SWITCH}=1`" in text

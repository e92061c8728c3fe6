"""`make test` keeps an xdist_group on one pytest-xdist worker (the Slurm tests share one
cluster); without `--dist loadgroup` (as in `make test-fast`) the mark does nothing.

pytest 9.2 with pytest-xdist 3.8 splits a group even under `--dist loadgroup` (xdist tags
the group onto `Item._nodeid`, which pytest 9.2 no longer reads): the test extra pins
pytest below 9.2, and the first test here fails if that comes back."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("g")

@pytest.mark.parametrize("i", range(4))
def test_grouped(i):
    pass
"""

FREE = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_free(i):
    pass
"""


def _make_test_options() -> list[str]:
    """The pytest options of the Makefile's `test` recipe."""
    recipe = (REPO / "Makefile").read_text().split("\ntest:")[1].split("\n\n")[0]
    line = next(ln for ln in recipe.splitlines() if "python -m pytest" in ln)
    return line.split("python -m pytest", 1)[1].split()


def _workers(tmp_path: Path, options: list[str]) -> dict[str, set[str]]:
    """Which workers ran the grouped and the free tests, by node id's group suffix."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_free.py").write_text(FREE)
    run = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                          *options], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    found: dict[str, set[str]] = {}
    for worker, node in re.findall(r"\[(gw\d+)\][^\n]*? PASSED (\S+)", run.stdout):
        found.setdefault(node.split("::")[0] + ("@g" if node.endswith("@g") else ""),
                         set()).add(worker)
    return found


@pytest.mark.slow
def test_make_test_keeps_a_group_on_one_worker(tmp_path):
    options = [o for o in _make_test_options() if not o.startswith("--durations")]
    assert "loadgroup" in " ".join(options)
    found = _workers(tmp_path, options)
    assert len(found["test_grouped.py@g"]) == 1  # all four on one worker
    assert "test_free.py" in found


@pytest.mark.slow
def test_without_loadgroup_the_mark_is_ignored(tmp_path):
    found = _workers(tmp_path, ["-n", "2"])  # make test-fast's distribution
    assert "test_grouped.py@g" not in found and "test_grouped.py" in found

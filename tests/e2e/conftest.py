"""The one trained repository of the end-to-end tests: built once per test run, shared by
the pytest-xdist workers, then copied (with its git history and DVC cache) or cloned by
the tests that need one."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock

from pipeline_helpers import TRAINED_PARAMS, copy_repo, dvc, git, make_pipeline


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory, worker_id: str) -> Path:
    """`dvc repro` of TRAINED_PARAMS, committed. Never modify it: copy it first.

    Under pytest-xdist the first worker to ask builds it in the folder the workers share
    (the xdist documentation's pattern); the others wait on the lock and reuse it."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent
    work, done = root / "trained" / "repo", root / "trained.done"
    with FileLock(str(root / "trained.lock")):
        if not done.is_file():
            make_pipeline(work, TRAINED_PARAMS, "studies")
            dvc(work, "repro")
            git(work, "add", "-A")
            git(work, "commit", "-qm", "baseline")
            done.touch()
    return work


@pytest.fixture
def trained_copy(trained_repo: Path, tmp_path: Path) -> Path:
    """A private copy of trained_repo, free to change."""
    return copy_repo(trained_repo, tmp_path / "repo")

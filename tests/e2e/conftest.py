"""The one trained repository of the end-to-end tests: built once per session, then
copied (with its git history and DVC cache) or cloned by the tests that need one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_helpers import TRAINED_PARAMS, copy_repo, dvc, git, make_pipeline


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory) -> Path:
    """`dvc repro` of TRAINED_PARAMS, committed. Never modify it: copy it first."""
    work = make_pipeline(tmp_path_factory.mktemp("trained") / "repo", TRAINED_PARAMS,
                         "studies")
    dvc(work, "repro")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "baseline")
    return work


@pytest.fixture
def trained_copy(trained_repo: Path, tmp_path: Path) -> Path:
    """A private copy of trained_repo, free to change."""
    return copy_repo(trained_repo, tmp_path / "repo")

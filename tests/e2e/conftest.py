"""The one trained repository of the end-to-end tests: built once per test run, shared by
the pytest-xdist workers, then copied (with its git history and DVC cache) or cloned by
the tests that need one."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_helpers import TRAINED_PARAMS, built_once, copy_repo, dvc, git, make_pipeline


def _build_trained(work: Path) -> None:
    make_pipeline(work, TRAINED_PARAMS, "studies")
    dvc(work, "repro")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "baseline")


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory, worker_id: str) -> Path:
    """`dvc repro` of TRAINED_PARAMS, committed, built once per test run and shared by the
    pytest-xdist workers (pipeline_helpers.built_once). Never modify it: copy it first."""
    return built_once(tmp_path_factory, worker_id, "trained", _build_trained)


@pytest.fixture
def trained_copy(trained_repo: Path, tmp_path: Path) -> Path:
    """A private copy of trained_repo, free to change."""
    return copy_repo(trained_repo, tmp_path / "repo")

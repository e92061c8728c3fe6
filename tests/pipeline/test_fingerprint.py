"""A run's fingerprint covers exactly the code that can change its numbers (numeric.py):
every file of the train stage's imports declared, edits of a copy of the checkout in both
directions, and adoption writing the bytes of a fresh run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from normbounds.pipeline import imports, numeric
from normbounds.pipeline.imports import REPO, code_deps, relative, stage_files
from normbounds.pipeline.runs import HARMLESS

from pipeline_helpers import Killed, folder_bytes, killed_after, tiny_run_cfg, train_tiny

CLOSURE = {relative(p) for p in stage_files(numeric.TRAIN_STAGE)}
# the files the issue that introduced the split names on each side
EDITABLE = ["src/normbounds/errors.py", "src/normbounds/progress.py",
            "src/normbounds/pipeline/paths.py", "src/normbounds/pipeline/imports.py",
            "src/normbounds/constraints.py"]
SETS_ASIDE = ["src/normbounds/pipeline/models.py", "src/normbounds/pipeline/train.py",
              "src/normbounds/pipeline/precision.py", "src/normbounds/pipeline/data.py",
              "src/normbounds/pipeline/datasets.py", "src/normbounds/reproducibility.py"]


def test_every_file_the_train_stage_imports_is_declared_once():
    assert numeric.undeclared(CLOSURE) == [], (
        "declare these in src/normbounds/pipeline/numeric.py, NUMERIC or NOT_NUMERIC")
    assert not set(numeric.NUMERIC) & set(numeric.NOT_NUMERIC)
    assert set(numeric.NUMERIC) | set(numeric.NOT_NUMERIC) == CLOSURE  # no stale entry
    assert set(EDITABLE) <= set(numeric.NOT_NUMERIC) and set(SETS_ASIDE) <= set(numeric.NUMERIC)


def test_an_undeclared_file_is_caught_and_counts_as_numeric(monkeypatch):
    monkeypatch.delitem(numeric.NOT_NUMERIC, "src/normbounds/errors.py")
    assert numeric.undeclared(CLOSURE) == ["src/normbounds/errors.py"]
    assert numeric.is_numeric("src/normbounds/errors.py")  # the safe side
    assert "src/normbounds/errors.py" in {relative(p) for p in code_deps("train")}


def test_the_pipeline_docs_show_the_declaration():
    assert numeric.table() in (REPO / "docs" / "pipeline.md").read_text()


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A copy of the code at another path, which the fingerprint digests (imports.REPO)."""
    copy = tmp_path / "checkout"
    for name in ("src", "stages"):
        shutil.copytree(REPO / name, copy / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    monkeypatch.setattr(imports, "REPO", copy)
    monkeypatch.setattr(imports, "PACKAGE", copy / "src" / "normbounds")
    return copy


MODELS = "src/normbounds/pipeline/models.py"


def _edit(checkout: Path, file: str) -> None:
    path = checkout / file
    path.write_text(path.read_text() + "# an edit\n")


def test_two_checkouts_at_different_paths_train_the_same_bytes(checkout, tmp_path):
    train_tiny(tiny_run_cfg(), tmp_path / "here")
    shutil.move(checkout, tmp_path / "elsewhere" / "deeper")
    imports.REPO, imports.PACKAGE = (tmp_path / "elsewhere" / "deeper",
                                     tmp_path / "elsewhere" / "deeper" / "src" / "normbounds")
    train_tiny(tiny_run_cfg(), tmp_path / "there")
    assert folder_bytes(tmp_path / "here") == folder_bytes(tmp_path / "there")


@pytest.mark.parametrize("file", EDITABLE)
def test_editing_a_file_that_is_not_numeric_retrains_nothing(checkout, tmp_path, file):
    folder = tmp_path / "run"
    history = train_tiny(tiny_run_cfg(), folder)
    before = folder_bytes(folder)
    _edit(checkout, file)
    messages: list[str] = []
    assert train_tiny(tiny_run_cfg(), folder, messages) == history
    assert messages == ["train@2-3-0: resuming from epoch 3 of 3"]
    assert folder_bytes(folder) == before
    assert file not in {relative(p) for p in code_deps("train")}  # DVC does not rerun it


@pytest.mark.parametrize("file", SETS_ASIDE)
def test_editing_a_numeric_file_sets_the_run_aside(checkout, tmp_path, file):
    folder = tmp_path / "run"
    train_tiny(tiny_run_cfg(), folder)
    before = folder_bytes(folder)
    _edit(checkout, file)
    messages: list[str] = []
    train_tiny(tiny_run_cfg(), folder, messages)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".run.code-")]
    assert len(aside) == 1 and folder_bytes(aside[0]) == before  # the old run, byte for byte
    assert any(f"was trained by other code ({file} changed): kept in {aside[0]}" in m
               for m in messages), messages
    assert file in {relative(p) for p in code_deps("train")}


def test_adopting_a_finished_run_writes_a_fresh_runs_bytes(checkout, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    history = train_tiny(tiny_run_cfg(), folder)
    _edit(checkout, MODELS)  # declared harmless below
    monkeypatch.setenv(HARMLESS, "1")
    messages: list[str] = []
    assert train_tiny(tiny_run_cfg(), folder, messages) == history  # nothing trained again
    assert messages[0] == (f"{folder}: the code changed ({MODELS});"
                           f" {HARMLESS}=1 declares it harmless: resuming from epoch 3")
    monkeypatch.delenv(HARMLESS)
    train_tiny(tiny_run_cfg(), tmp_path / "fresh")
    assert folder_bytes(folder) == folder_bytes(tmp_path / "fresh")  # every file, not the newest
    assert not any(p.name.startswith(".run.") for p in tmp_path.iterdir())


def test_adopting_an_unfinished_run_then_finishing_it_writes_a_fresh_runs_bytes(
        checkout, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    with pytest.raises(Killed):
        train_tiny(tiny_run_cfg(), folder, log=killed_after(1))
    _edit(checkout, "src/normbounds/pipeline/train.py")
    monkeypatch.setenv(HARMLESS, "1")
    messages: list[str] = []
    train_tiny(tiny_run_cfg(), folder, messages)
    assert messages[1] == "train@2-3-0: resuming from epoch 1 of 3"  # the resume state adopted
    monkeypatch.delenv(HARMLESS)
    train_tiny(tiny_run_cfg(), tmp_path / "fresh")
    assert folder_bytes(folder) == folder_bytes(tmp_path / "fresh")
